fn main() -> std::process::ExitCode {
    imgscript::cli::main()
}
