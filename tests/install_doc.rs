//! docs/install.md's "Try it locally" section, run as written: each shell block line against
//! the test control plane (KUBECONFIG), from the repository root, with the test kubectl. A
//! guide whose commands stop working fails here.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

fn local_section(markdown: &str) -> Vec<String> {
    let section = markdown.split("\n## Try it locally").nth(1).expect("docs/install.md has a Try it locally section");
    let section = section.split("\n## ").next().unwrap();
    let mut commands = Vec::new();
    let mut in_block = false;
    for line in section.lines() {
        match (in_block, line.trim_start().starts_with("```")) {
            (false, true) => in_block = line.trim() == "```sh",
            (true, true) => in_block = false,
            (true, false) if !line.trim().is_empty() => commands.push(line.trim().to_string()),
            _ => {}
        }
    }
    commands
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_install_guides_local_section_runs() {
    let _ = client().await; // starts this binary's control plane
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let guide = std::fs::read_to_string(root.join("docs/install.md")).unwrap();
    let commands = local_section(&guide);
    assert!(commands.len() >= 4, "{commands:?}");
    assert!(commands.iter().all(|c| c.starts_with("kubectl ")), "only kubectl here: {commands:?}");
    let bin = testbin();
    let path = format!("{}:/usr/bin:/bin", bin.display());
    let mut outputs = Vec::new();
    for command in &commands {
        let out = tokio::task::spawn_blocking({
            let (command, path, root) = (command.clone(), path.clone(), root.clone());
            move || {
                Command::new("bash")
                    .args(["-euo", "pipefail", "-c", &command])
                    .current_dir(root)
                    .env("PATH", path)
                    .env("KUBECONFIG", &cluster().kubeconfig)
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(out.status.success(), "`{command}` failed: {}", String::from_utf8_lossy(&out.stderr));
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    // The image line prints what deploy/ pins: this project's image at this version.
    let image = outputs.iter().find(|o| o.contains("dittofs-operator:")).expect("the image is printed");
    assert!(image.ends_with(&format!(":v{}", env!("CARGO_PKG_VERSION"))), "{image}");
    assert!(outputs.last().unwrap().contains("demo"), "{}", outputs.last().unwrap());
}
