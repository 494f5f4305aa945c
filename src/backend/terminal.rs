//! Interactive containers: a shell on the user's terminal, as
//! `docker run -it --rm` gives, for the REPL's `:shell`.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bollard::container::LogOutput;
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{AttachContainerOptionsBuilder, ResizeContainerTTYOptionsBuilder};
use futures_util::StreamExt;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::AsyncWriteExt;

use super::Docker;
use crate::diagnostics::Error;

/// Puts the terminal on stdin into raw mode until dropped, so that keys
/// reach the container's shell unprocessed.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enable() -> Option<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Tells the key reader to stop when dropped, also when the future that
/// owns it is dropped because the user interrupted it.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

impl Docker {
    /// Runs `command` in a new container from `image` with a TTY, wired to
    /// this process's terminal, and returns its exit code once it ends. The
    /// container is removed afterwards.
    pub async fn run_interactive(
        &self,
        image: &str,
        command: &[String],
        binds: Vec<String>,
    ) -> Result<i64, Error> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(command.to_vec()),
            tty: Some(true),
            open_stdin: Some(true),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            host_config: Some(HostConfig {
                binds: Some(binds),
                ..HostConfig::default()
            }),
            ..ContainerCreateBody::default()
        };
        let container = self.create_container(body).await?;
        let result = self.attach_terminal(&container).await;
        self.remove_container(&container).await;
        result
    }

    async fn attach_terminal(&self, container: &str) -> Result<i64, Error> {
        let options = AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdin(true)
            .stdout(true)
            .stderr(true)
            .build();
        let attached = self
            .client
            .attach_container(container, Some(options))
            .await
            .map_err(|error| Error::docker("attaching to a container", error))?;
        self.client
            .start_container(
                container,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|error| Error::docker("starting a container", error))?;
        if let Some((width, height)) = terminal_size::terminal_size() {
            let size = ResizeContainerTTYOptionsBuilder::default()
                .w(i32::from(width.0))
                .h(i32::from(height.0))
                .build();
            let _ = self.client.resize_container_tty(container, size).await;
        }

        let raw_mode = RawMode::enable();
        let stop = StopOnDrop(Arc::new(AtomicBool::new(false)));
        let (keys, mut keys_received) = tokio::sync::mpsc::channel::<Vec<u8>>(16);
        let reader = std::thread::spawn({
            let stop = Arc::clone(&stop.0);
            move || read_keys(&stop, &keys)
        });
        let mut input = attached.input;
        let forward = tokio::spawn(async move {
            while let Some(bytes) = keys_received.recv().await {
                if input.write_all(&bytes).await.is_err() || input.flush().await.is_err() {
                    break;
                }
            }
        });

        let mut output = attached.output;
        while let Some(chunk) = output.next().await {
            let Ok(chunk) = chunk else { break };
            let bytes = match chunk {
                LogOutput::StdOut { message }
                | LogOutput::StdErr { message }
                | LogOutput::Console { message } => message,
                LogOutput::StdIn { .. } => continue,
            };
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(&bytes);
            let _ = stdout.flush();
        }

        drop(stop);
        let _ = reader.join();
        forward.abort();
        drop(raw_mode);
        self.wait(container).await
    }
}

/// Reads keys from stdin and sends them on, until `stop` is set. It polls
/// with a short timeout rather than blocking in `read`, so that it never
/// swallows a key meant for whatever reads stdin after the container ends.
fn read_keys(stop: &AtomicBool, keys: &tokio::sync::mpsc::Sender<Vec<u8>>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

    let stdin = std::io::stdin();
    let mut buffer = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let read = match stdin.lock().read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if keys.blocking_send(buffer[..read].to_vec()).is_err() {
            return;
        }
    }
}
