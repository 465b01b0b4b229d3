//! Every shell block (```sh) and every transcript (a plain block whose first line is
//! `$ command`) of README.md and docs/*.md says, on the line before it, who runs its commands,
//! and that claim is checked:
//!
//! - `<!-- commands: run by tests/guides.rs -->`: this file runs the block, against its control
//!   plane (an operator in-process; DittoServers `demo` in `default` and `files` in `storage`,
//!   and crd.md's `legacy` until crd.md is done), from a scratch directory holding `deploy/`,
//!   `scripts/`, `my-server.yaml` and the files crd.md and diff.md name, in document order
//!   (diff.md, which leaves `demo` paused, last). `NAME`, `NS` and `NAMESPACE` stand for `demo`
//!   and `default`; `/tmp/cp` for a directory inside the scratch one. A shell block runs whole
//!   with `bash -euo pipefail` and must succeed; a transcript's commands run one by one and
//!   must do what it shows: the error, the `exit=N` lines and whole JSON it shows (see
//!   [`check_shown`]).
//! - `<!-- commands: run by scripts/A.sh and scripts/B.sh -->`: each of the block's commands is
//!   one of those scripts' commands, or a run of words inside one (a script's word with a `$`
//!   stands for any word; `k` and `"$KUBECTL"` for kubectl; timeouts may differ; a line that
//!   prints a message does not count).
//! - `<!-- commands: need … -->`: what this machine lacks (a real cloud, a published release).
//!
//! A guide whose commands stop working or whose transcripts stop being true, or a script that
//! stops running them, fails here.

mod support;

use std::path::Path;
use std::process::Command;

use kube::api::{Api, PostParams};
use support::*;

const THIS_FILE: &str = "tests/guides.rs";

/// A ```sh block of a guide, or a transcript (a plain block whose first line is `$ command`),
/// and the marker on the line before it.
#[derive(Debug)]
struct Block {
    /// `docs/install.md:135`: the fence's line.
    place: String,
    marker: Option<String>,
    /// The block's lines, less the fence's indentation.
    text: String,
    transcript: bool,
}

/// A command of a transcript and the output shown after it.
struct Shown {
    command: String,
    output: Vec<String>,
}

impl Block {
    /// The commands it runs: a shell block's, or a transcript's `$ ` lines.
    fn commands(&self) -> Vec<String> {
        match self.transcript {
            true => self.shown().into_iter().map(|s| s.command).collect(),
            false => commands(&self.text),
        }
    }

    /// A transcript's commands, each with the lines it shows.
    fn shown(&self) -> Vec<Shown> {
        let mut shown: Vec<Shown> = Vec::new();
        for line in self.text.lines() {
            match (line.strip_prefix("$ "), shown.last_mut()) {
                (Some(command), _) => shown.push(Shown { command: command.to_string(), output: Vec::new() }),
                (None, Some(last)) => last.output.push(line.to_string()),
                (None, None) => unreachable!("a transcript starts with `$ `"),
            }
        }
        shown
    }
}

enum Claim {
    RunByThisFile,
    RunByScripts(Vec<String>),
    Needs,
}

impl Block {
    fn claim(&self) -> Claim {
        let marker = self
            .marker
            .as_deref()
            .unwrap_or_else(|| panic!("{}: a ```sh block or transcript with no marker", self.place));
        if let Some(files) = marker.strip_prefix("run by ") {
            let files: Vec<String> = files.split(" and ").map(|f| f.trim().to_string()).collect();
            if files == [THIS_FILE] {
                return Claim::RunByThisFile;
            }
            assert!(!files.iter().any(|f| f == THIS_FILE), "{}: {THIS_FILE} runs a block alone", self.place);
            return Claim::RunByScripts(files);
        }
        assert!(
            marker.strip_prefix("need ").is_some_and(|why| why.len() > 10),
            "{}: `{marker}` is neither `run by FILE` nor `need WHAT`",
            self.place
        );
        Claim::Needs
    }
}

/// The guides: README.md and every docs/*.md, in name order.
fn guides() -> Vec<(String, String)> {
    let mut files = vec!["README.md".to_string()];
    let mut docs: Vec<String> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| format!("docs/{}", e.unwrap().file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(root().join(&f)).unwrap();
            (f, text)
        })
        .collect()
}

fn blocks(file: &str, markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(lang) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let fence = i;
        let indent = lines[fence].len() - lines[fence].trim_start().len();
        i += 1;
        let mut body = Vec::new();
        while i < lines.len() && !lines[i].trim_start().starts_with("```") {
            body.push(lines[i].get(indent..).unwrap_or(lines[i].trim_start()));
            i += 1;
        }
        i += 1;
        let transcript = lang.trim().is_empty() && body.first().is_some_and(|l| l.starts_with("$ "));
        if lang.trim() != "sh" && !transcript {
            continue;
        }
        let before = lines[..fence].iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim());
        let marker = before
            .and_then(|l| l.strip_prefix("<!-- commands:"))
            .and_then(|l| l.strip_suffix("-->"))
            .map(|m| m.trim().to_string());
        found.push(Block { place: format!("{file}:{}", fence + 1), marker, text: body.join("\n"), transcript });
    }
    found
}

/// A line less its `# comment` (a `#` that starts a word outside quotes).
fn without_comment(line: &str) -> &str {
    let (mut single, mut double, mut word_start) = (false, false, true);
    for (at, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if word_start && !single && !double => return &line[..at],
            _ => {}
        }
        word_start = c.is_whitespace();
    }
    line
}

/// The commands of a shell text: comments dropped, continued lines joined, here-documents'
/// bodies skipped.
fn commands(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current = String::new();
    let mut heredoc: Option<String> = None;
    for line in text.lines() {
        if let Some(end) = &heredoc {
            if line.trim() == end {
                heredoc = None;
            }
            continue;
        }
        let line = without_comment(line).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(at) = line.find("<<") {
            let word = line[at + 2..].trim_start_matches('-').trim_matches(|c| c == '\'' || c == '"');
            heredoc = word.split_whitespace().next().map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_string());
        }
        match line.strip_suffix('\\') {
            Some(continued) => current.push_str(continued),
            None => {
                current.push_str(line);
                found.push(current.split_whitespace().collect::<Vec<_>>().join(" "));
                current.clear();
            }
        }
        current.push(' ');
        if current.trim().is_empty() {
            current.clear();
        }
    }
    found
}

/// The words of a command, as compared: quotes and `$(`…`)` dropped, `k` and `"$KUBECTL"` as
/// kubectl, and no timeouts (a script waits as long as its machine needs).
fn words(command: &str) -> Vec<String> {
    let plain: String = command.replace("$(", " ").chars().filter(|c| *c != '\'' && *c != '"').collect();
    let mut out = Vec::new();
    let mut tokens = plain.split_whitespace();
    while let Some(token) = tokens.next() {
        let token = token.trim_end_matches(';');
        let token = if token.contains('(') { token } else { token.trim_end_matches(')') };
        if token == "--timeout" {
            tokens.next();
            continue;
        }
        if token.starts_with("--timeout=") || token.is_empty() {
            continue;
        }
        out.push(match token {
            "k" | "$KUBECTL" | "${KUBECTL}" => "kubectl".to_string(),
            _ => token.to_string(),
        });
    }
    out
}

/// A script's line that prints a message (which may quote a command) rather than running one.
fn prints(words: &[String]) -> bool {
    matches!(words.first().map(String::as_str), Some("step" | "echo" | "printf" | "die" | "log"))
}

/// Whether the script runs `command`: some command of it holds the same words in a row, where a
/// word of the script's with a `$` stands for any word.
fn runs(script: &[Vec<String>], command: &[String]) -> bool {
    script.iter().any(|line| {
        line.len() >= command.len()
            && (0..=line.len() - command.len())
                .any(|at| command.iter().zip(&line[at..]).all(|(want, have)| want == have || have.contains('$')))
    })
}

#[test]
fn every_shell_block_of_the_guides_says_who_runs_it_and_they_do() {
    let mut counts = [0usize; 3];
    for (file, text) in guides() {
        for block in blocks(&file, &text) {
            match block.claim() {
                Claim::RunByThisFile => counts[0] += 1,
                Claim::Needs => counts[2] += 1,
                Claim::RunByScripts(files) => {
                    counts[1] += 1;
                    let scripts: Vec<Vec<String>> = files
                        .iter()
                        .flat_map(|f| {
                            let text = std::fs::read_to_string(root().join(f))
                                .unwrap_or_else(|e| panic!("{}: {f}: {e}", block.place));
                            commands(&text).iter().map(|c| words(c)).filter(|w| !prints(w)).collect::<Vec<_>>()
                        })
                        .collect();
                    for command in block.commands() {
                        assert!(
                            runs(&scripts, &words(&command)),
                            "{}: `{command}` is not run by {}",
                            block.place,
                            files.join(" or ")
                        );
                    }
                }
            }
        }
    }
    eprintln!("shell blocks: {} run here, {} by scripts, {} need what is not here", counts[0], counts[1], counts[2]);
    assert!(counts[0] >= 5 && counts[1] >= 5, "{counts:?}");
}

#[test]
fn the_words_of_a_script_cover_a_guides_command() {
    let script: Vec<Vec<String>> = commands(
        "k() { \"$KUBECTL\" \"$@\"; }\nPASSWORD=$(k get secret demo-x -o jsonpath='{.data.password}' | base64 -d)\n\
         scripts/cluster.sh start --tier node --dir \"$CLUSTER\" --owner-pid $$   # comment\n\
         k -n dittofs-system rollout status deployment/dittofs-operator --timeout=120s\n\
         step \"kubectl get dittoservers\"\n",
    )
    .iter()
    .map(|c| words(c))
    .filter(|w| !prints(w))
    .collect();
    let covered = |c: &str| runs(&script, &words(c));
    assert!(covered("kubectl get secret demo-x -o jsonpath='{.data.password}' | base64 -d"));
    assert!(covered("scripts/cluster.sh start --tier node --dir /tmp/nt"));
    assert!(covered("kubectl -n dittofs-system rollout status deployment/dittofs-operator --timeout=5m"));
    assert!(!covered("kubectl get secret demo-y -o jsonpath='{.data.password}'"));
    assert!(!covered("scripts/cluster.sh start --tier api --dir /tmp/nt"));
    assert!(!covered("kubectl get dittoservers"), "a message is not a command");
    assert_eq!(commands("a \\\n  b # c\ncat <<EOF\nx # y\nEOF\nd '#e'"), ["a b", "cat <<EOF", "d '#e'"]);
}

/// `NAME`, `NS` and `NAMESPACE` as whole words.
fn with_placeholders(text: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        out.push_str(match word.as_str() {
            "NAME" => "demo",
            "NS" | "NAMESPACE" => "default",
            w => w,
        });
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let mut ns = k8s_openapi::api::core::v1::Namespace::default();
    ns.metadata.name = Some(name.to_string());
    let _ = Api::all(client.clone()).create(&PostParams::default(), &ns).await;
}

/// The scratch directory; a cluster a failed block left running in `cp` is stopped with it.
struct Scratch(tempfile::TempDir);

impl Drop for Scratch {
    fn drop(&mut self) {
        let cp = self.0.path().join("cp");
        if cp.join("kubeconfig").exists() {
            let _ = Command::new(root().join("scripts/cluster.sh")).args(["stop", "--dir"]).arg(&cp).status();
        }
    }
}

fn scratch_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["dittofs-operator", "kubectl-dittofs"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_dittofs-operator"), bin.join(name)).unwrap();
    }
    for name in ["deploy", "scripts"] {
        std::os::unix::fs::symlink(root().join(name), dir.path().join(name)).unwrap();
    }
    // What templates.md's reader edits and renders: their own DittoServer.
    let sample = std::fs::read_to_string(root().join("deploy/samples/minimal-sqlite.yaml")).unwrap();
    std::fs::write(dir.path().join("my-server.yaml"), &sample).unwrap();
    // crd.md's DittoServer of the earlier operator, with a field this one does not have.
    let old = format!("{}  smb: {{maxConnections: 100}}\n", sample.replacen("name: demo", "name: old", 1));
    std::fs::write(dir.path().join("old.yaml"), old).unwrap();
    // diff.md's files: demo's spec as its transcripts have it by then, with metrics and without.
    let live = format!("{sample}  image: marmos91c/dittofs:v0.29.1\n");
    std::fs::write(dir.path().join("demo-nometrics.yaml"), &live).unwrap();
    std::fs::write(dir.path().join("demo-metrics.yaml"), format!("{live}  metrics: {{enabled: true}}\n")).unwrap();
    dir
}

/// crd.md's `legacy` (deleted after crd.md): a JWT Secret that does not exist and overrides
/// the operator ignores.
const LEGACY: &str = "apiVersion: dittofs.dittofs.com/v1alpha1\nkind: DittoServer\nmetadata: {name: legacy}\n\
spec:\n  storage: {metadataSize: 10Gi}\n  identity: {jwt: {secretRef: {name: nope}}}\n\
  templates: {configMapRef: {name: my-templates}}\n";

/// Guides whose blocks change `demo` (paused, with changes pending): run after the others.
const LAST: &[&str] = &["docs/diff.md"];

/// Runs shell `text` in `dir` with `bash -euo pipefail` (`strict`) or as typed at a prompt;
/// local-control-plane.md's cluster in `/tmp/cp` goes to `dir/cp`.
fn shell(text: &str, dir: &Path, strict: bool) -> std::process::Output {
    let bin = testbin();
    let inherited = std::env::var("PATH").unwrap_or_default();
    let path = format!("{}:{}:{inherited}", dir.join("bin").display(), bin.display());
    let text = with_placeholders(text).replace("/tmp/cp", dir.join("cp").to_str().unwrap());
    Command::new("bash")
        .args(if strict { ["-euo", "pipefail", "-c"].as_slice() } else { ["-c"].as_slice() })
        .arg(&text)
        .current_dir(dir)
        .env("PATH", path)
        .env("KUBECONFIG", &cluster().kubeconfig)
        .env("DITTOFS_TESTBIN", &bin)
        .env("EDITOR", "true")
        .output()
        .unwrap()
}

/// Runs a block in `dir`: a shell block must succeed; a transcript's commands must do what it
/// shows (see [`check_shown`]).
fn run_block(block: &Block, dir: &Path) {
    if block.transcript {
        for shown in block.shown() {
            check_shown(&block.place, &shown, &shell(&shown.command, dir, false));
        }
        return;
    }
    let out = shell(&block.text, dir, true);
    assert!(
        out.status.success(),
        "{} failed ({}):\n{}\nstdout:\n{}\nstderr:\n{}",
        block.place,
        out.status,
        block.text,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Output lines split into the `exit=N` lines and the rest, joined.
fn exits_and_body<'a>(lines: impl Iterator<Item = &'a str>) -> (Vec<&'a str>, String) {
    let (exits, body): (Vec<&str>, Vec<&str>) = lines.partition(|l| l.starts_with("exit="));
    (exits, body.join("\n"))
}

/// JSON less what differs from run to run (a condition's time and generation).
fn stable(mut json: serde_json::Value) -> serde_json::Value {
    if let Some(object) = json.as_object_mut() {
        object.remove("lastTransitionTime");
        object.remove("observedGeneration");
    }
    json
}

/// What a transcript shows of a command, against what it did:
/// - an error shown (`Error from server…`, `… is invalid: …`, `error: …`): the command fails
///   with that first line;
/// - `exit=N` lines: the same, in order;
/// - JSON shown whole (no `...`): the same JSON, a condition's time and generation aside;
/// - otherwise the command succeeds (a `diff` may exit 1: that means "changes").
///
/// Other output (tables, timestamps, diffs) is illustration and not compared.
fn check_shown(place: &str, shown: &Shown, out: &std::process::Output) {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let context = || format!("{place}: `{}` ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}", shown.command, out.status);
    let flat = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let first = shown.output.iter().find(|l| !l.trim().is_empty()).map(|l| l.trim()).unwrap_or_default();
    if first.starts_with("Error from server") || first.starts_with("error:") || first.contains(" is invalid: ") {
        assert!(!out.status.success(), "{}: the error shown did not happen", context());
        assert!(flat(&stderr).contains(&flat(first)), "{}: shows `{first}`", context());
        return;
    }
    let (shown_exits, shown_body) = exits_and_body(shown.output.iter().map(String::as_str));
    let (exits, body) = exits_and_body(stdout.lines());
    assert_eq!(exits, shown_exits, "{}", context());
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(&shown_body) {
        let actual = serde_json::from_str::<serde_json::Value>(&body);
        assert_eq!(actual.ok().map(stable), Some(stable(json)), "{}: shows the JSON\n{shown_body}", context());
    }
    if shown_exits.is_empty() && !shown.command.starts_with("dittofs-operator diff") {
        assert!(out.status.success(), "{}", context());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocks_this_file_runs_run_as_written() {
    let client = client().await;
    install_crd(&client).await;
    install_percona_crd(&client).await;
    for ns in ["storage", "dittofs-system"] {
        create_namespace(&client, ns).await;
    }
    let operator = Operator::start_with(&client, dittofs_operator::settings::Settings::for_tests(None));
    let sample = std::fs::read_to_string(root().join("deploy/samples/minimal-sqlite.yaml")).unwrap();
    let servers = |ns: &str| Api::<dittofs_operator::crd::DittoServer>::namespaced(client.clone(), ns);
    servers("default").create(&PostParams::default(), &server("default", &sample)).await.unwrap();
    let files = sample.replacen("name: demo", "name: files", 1);
    servers("storage").create(&PostParams::default(), &server("storage", &files)).await.unwrap();
    servers("default").create(&PostParams::default(), &server("default", LEGACY)).await.unwrap();
    operator.quiescent().await;

    let dir = Scratch(scratch_dir());
    let mut ran = Vec::new();
    let mut guides = guides();
    guides.sort_by_key(|(file, _)| LAST.contains(&file.as_str()));
    for (file, text) in guides {
        for block in blocks(&file, &text) {
            if matches!(block.claim(), Claim::RunByThisFile) {
                let block_dir = dir.0.path().to_path_buf();
                let place = block.place.clone();
                tokio::task::spawn_blocking(move || run_block(&block, &block_dir)).await.unwrap();
                ran.push(place);
            }
        }
        if file == "docs/crd.md" {
            // Held for its Secret, `legacy` would always diff: the other guides see it gone.
            servers("default").delete("legacy", &Default::default()).await.unwrap();
        }
    }
    eprintln!("ran {ran:?}");
    operator.shutdown().await;
}
