//! A real `idlink serve` process for the process-level tests (kill -9, several
//! instances): pinned admin credentials, a fixed public URL so tokens stay valid across
//! restarts, the rate limit off.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub use idlink_server::testing::{TEST_ADMIN_CLIENT_ID, TEST_ADMIN_CLIENT_SECRET};

/// The issuer every instance shares, whatever port it listens on.
pub const PUBLIC_URL: &str = "http://idlink.test";
/// The Management API audience of [`PUBLIC_URL`].
pub const AUDIENCE: &str = "https://idlink.test/api/v2/";

/// A running `idlink serve`; killed when dropped.
pub struct Instance {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
}

impl Instance {
    /// Starts the binary on `database_url` with `extra` flags and waits until it listens.
    pub fn spawn(database_url: &str, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_idlink"))
            .args(["serve", "--bind", "127.0.0.1:0", "--db", database_url])
            .args(["--public-url", PUBLIC_URL, "--rate-limit", "off"])
            .args(["--admin-client-id", TEST_ADMIN_CLIENT_ID])
            .args(["--admin-client-secret", TEST_ADMIN_CLIENT_SECRET])
            .args(extra)
            .env("RUST_LOG", "warn")
            .env_remove("IDLINK_CONFIG")
            .env_remove("IDLINK_RATE_LIMIT")
            .env_remove("IDLINK_REQUEST_TIMEOUT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn idlink");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let base_url = loop {
            let line = lines
                .next()
                .expect("idlink exited before listening")
                .expect("stdout line");
            if let Some(rest) = line.strip_prefix("idlink listening on ") {
                let addr = rest.split_whitespace().next().expect("address");
                break format!("http://{addr}");
            }
        };
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Self { child, base_url }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// kill -9.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
