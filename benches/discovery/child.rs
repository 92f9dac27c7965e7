//! The registry in a child process (the bench re-executed with
//! `--registry <n>`), so the parent's CPU time counts the client alone.
//! Commands on stdin, one a line: `critical <i>` / `passing <i>` set the
//! health of instance `i` and answer the new index; `connections` answers
//! the connections the registry has accepted. EOF ends the child.

use std::io::{BufRead, Write};
use std::process::Stdio;

use meshguard::testing::{CheckStatus, ConsulRegistry};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Instance `i`'s id.
pub fn id(i: usize) -> String {
    format!("users-{i}")
}

/// The child: a registry with `n` passing instances of `users`, driven by
/// stdin.
pub fn serve(n: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let consul = runtime.block_on(async {
        let consul = ConsulRegistry::start().await;
        for i in 0..n {
            let address = format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255);
            consul.register_passing("users", &id(i), &address, 8080);
        }
        consul
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", consul.url()).expect("stdout");
    out.flush().expect("stdout");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next().and_then(|i| i.parse().ok())) {
            (Some("critical"), Some(i)) => {
                consul.set_health(&id(i), CheckStatus::Critical);
                consul.index()
            }
            (Some("passing"), Some(i)) => {
                consul.set_health(&id(i), CheckStatus::Passing);
                consul.index()
            }
            (Some("connections"), _) => consul.connections(),
            _ => panic!("unknown command {line:?}"),
        };
        writeln!(out, "{answer}").expect("stdout");
        out.flush().expect("stdout");
    }
}

/// The parent's handle on the child.
pub struct Registry {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    /// The registry's URL.
    pub url: String,
}

impl Registry {
    /// Starts the child with `n` instances; returns once it serves.
    pub async fn start(n: usize) -> Registry {
        let mut child = tokio::process::Command::new(std::env::current_exe().expect("the bench"))
            .arg("--registry")
            .arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the registry's process");
        let stdin = child.stdin.take().expect("piped");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let url = stdout.next_line().await.expect("stdout").expect("a URL");
        Registry {
            _child: child,
            stdin,
            stdout,
            url,
        }
    }

    /// Sends a command; its answer.
    pub async fn ask(&mut self, command: &str) -> u64 {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("stdin");
        self.stdin.flush().await.expect("stdin");
        let line = self.stdout.next_line().await.expect("stdout");
        line.expect("an answer").parse().expect("a number")
    }
}
