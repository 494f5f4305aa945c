//! `imgscript graph`: the planned layer DAG as Graphviz DOT or a Mermaid
//! flowchart, each step marked cached, to build or to pull.

use crate::plan::{Plan, Reason, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// Returns the label and style class of a step's state.
fn state(status: &Status) -> (&'static str, &'static str) {
    match status {
        Status::Cached { .. } => ("cached", "cached"),
        Status::Build(Reason::BaseMissing) => ("to pull", "pull"),
        Status::Build(_) => ("to build", "build"),
    }
}

/// Renders `plan` in `format`: one node per step with its description,
/// script location and state, an edge from each parent, a dashed edge from
/// each `copy_from` source, and a node per target.
pub fn render(plan: &Plan, format: GraphFormat) -> String {
    match format {
        GraphFormat::Dot => dot(plan),
        GraphFormat::Mermaid => mermaid(plan),
    }
}

fn dot(plan: &Plan) -> String {
    let quote = |text: &str| text.replace('\\', "\\\\").replace('"', "\\\"");
    let mut out = String::from(
        "digraph imgscript {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", style=filled];\n",
    );
    for (index, step) in plan.steps.iter().enumerate() {
        let (label, class) = state(&step.status);
        let color = match class {
            "cached" => "#d4edda",
            "pull" => "#d6e4f0",
            _ => "#fff3cd",
        };
        out.push_str(&format!(
            "  s{index} [label=\"{}\\n{}\\n{label}\", fillcolor=\"{color}\"];\n",
            quote(&step.layer.describe()),
            quote(&step.layer.call.location()),
        ));
    }
    for (index, step) in plan.steps.iter().enumerate() {
        if let Some(parent) = step.parent {
            out.push_str(&format!("  s{parent} -> s{index};\n"));
        }
        if let Some(source) = step.source {
            out.push_str(&format!(
                "  s{source} -> s{index} [style=dashed, label=\"copy_from\"];\n"
            ));
        }
    }
    for (number, target) in plan.targets.iter().enumerate() {
        let name = target.name.as_deref().unwrap_or("image");
        out.push_str(&format!(
            "  t{number} [label=\"{}\", shape=ellipse, fillcolor=\"white\"];\n  s{} -> t{number};\n",
            quote(name),
            target.step
        ));
    }
    out.push_str("}\n");
    out
}

fn mermaid(plan: &Plan) -> String {
    // Mermaid's entity codes, so that labels may hold quotes and shell text.
    let quote = |text: &str| {
        text.replace('&', "#amp;")
            .replace('"', "#quot;")
            .replace('<', "#lt;")
            .replace('>', "#gt;")
    };
    let mut out = String::from("flowchart TD\n");
    for (index, step) in plan.steps.iter().enumerate() {
        let (label, class) = state(&step.status);
        out.push_str(&format!(
            "  s{index}[\"{}<br/>{}<br/>{label}\"]:::{class}\n",
            quote(&step.layer.describe()),
            quote(&step.layer.call.location()),
        ));
    }
    for (index, step) in plan.steps.iter().enumerate() {
        if let Some(parent) = step.parent {
            out.push_str(&format!("  s{parent} --> s{index}\n"));
        }
        if let Some(source) = step.source {
            out.push_str(&format!("  s{source} -.->|copy_from| s{index}\n"));
        }
    }
    for (number, target) in plan.targets.iter().enumerate() {
        let name = target.name.as_deref().unwrap_or("image");
        out.push_str(&format!(
            "  t{number}([\"{}\"])\n  s{} --> t{number}\n",
            quote(name),
            target.step
        ));
    }
    out.push_str(
        "  classDef cached fill:#d4edda\n  classDef build fill:#fff3cd\n  classDef pull fill:#d6e4f0\n",
    );
    out
}
