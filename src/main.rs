use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use dittofs_operator::cmd::diff;
use dittofs_operator::{cmd, crd, operator, overrides, render, settings, values::ValuesBuilder};

#[derive(Parser)]
#[command(name = "dittofs-operator", version, about = "Runs DittoFS on Kubernetes from DittoServer resources")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster in KUBECONFIG or the in-cluster config.
    Run(settings::RunArgs),
    /// Render the manifests for a DittoServer file, without a cluster.
    Render(RenderArgs),
    /// Show what the operator would change in the cluster (exit 0: none, 1: changes, 2: error).
    Diff(diff::DiffArgs),
    /// Write a support tarball for one DittoServer: its CR, objects, Events, logs, DittoFS's
    /// state and the diff, with every Secret value masked.
    Report(cmd::report::ReportArgs),
    /// Print the DittoServer CustomResourceDefinition.
    Crd,
    /// List or show the embedded templates.
    Templates {
        #[command(subcommand)]
        command: TemplatesCommand,
    },
    /// Print the version and the pinned DittoFS image.
    Version,
}

#[derive(clap::Args)]
struct RenderArgs {
    /// DittoServer YAML; Secrets in the same file stand in for the cluster's.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    #[command(flatten)]
    values: settings::ValuesArgs,
    /// Directory of template overrides (files named like the templates, and values.yaml),
    /// as the override ConfigMap's keys.
    #[arg(long = "templates")]
    templates: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TemplatesCommand {
    /// Names of the embedded templates.
    List,
    /// Print one embedded template.
    Show { name: String },
}

/// The name kubectl runs a plugin by: `kubectl dittofs diff|render|report …` runs this binary
/// installed (or linked) as `kubectl-dittofs` on the PATH.
const KUBECTL_PLUGIN: &str = "kubectl-dittofs";

fn main() -> ExitCode {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let argv0 = std::env::args_os().next().unwrap_or_default();
    let as_plugin = std::path::Path::new(&argv0).file_name().is_some_and(|name| name == KUBECTL_PLUGIN);
    let cli = if as_plugin {
        let matches = Cli::command().name(KUBECTL_PLUGIN).bin_name("kubectl dittofs").get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    } else {
        Cli::parse()
    };
    let result = match cli.command {
        Command::Run(args) => operator::run_blocking(args),
        Command::Render(args) => render_command(args),
        Command::Diff(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            match runtime.block_on(diff::diff(args)) {
                Ok(true) => return ExitCode::from(1),
                Ok(false) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Command::Report(args) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            runtime.block_on(cmd::report::report(args)).map(|path| println!("{}", path.display()))
        }
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            Ok(())
        }
        Command::Templates { command: TemplatesCommand::List } => {
            for name in render::TemplateSource::embedded_names() {
                println!("{name}");
            }
            Ok(())
        }
        Command::Templates { command: TemplatesCommand::Show { name } } => {
            match render::TemplateSource::embedded().get(&name) {
                Some(text) => {
                    print!("{text}");
                    Ok(())
                }
                None => Err(anyhow::anyhow!("no template {name:?}; `dittofs-operator templates list` shows the names")),
            }
        }
        Command::Version => {
            let values = ValuesBuilder::new().build().expect("embedded defaults");
            println!("dittofs-operator {}", env!("CARGO_PKG_VERSION"));
            println!("dittofs image {}:{}", values.image.repository, values.image.tag);
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn render_command(args: RenderArgs) -> Result<()> {
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading {file}"))?;
    let sets = match &args.templates {
        Some(dir) => vec![overrides::Overrides::from_dir(dir)?],
        None => Vec::new(),
    };
    let rendered = cmd::render::render_offline(&file, &text, args.values.builder()?, &sets)?;
    print!("{}", rendered.to_yaml());
    Ok(())
}
