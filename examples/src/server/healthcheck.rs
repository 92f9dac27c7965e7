//! `SERVICE healthcheck`: the container health check, for images with no
//! curl (compose's `healthcheck: ["CMD", "user_service", "healthcheck"]`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// Whether the process was started as `SERVICE healthcheck`.
pub fn healthcheck_requested() -> bool {
    std::env::args().nth(1).as_deref() == Some("healthcheck")
}

/// Asks `GET /health` of the service on `127.0.0.1:port`, within 2 s:
/// the process exit code, 0 when it answered 200, else 1.
pub fn healthcheck(port: u16) -> i32 {
    match ask(port) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            eprintln!("healthcheck: {e}");
            1
        }
    }
}

fn ask(port: u16) -> std::io::Result<bool> {
    let timeout = Duration::from_secs(2);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    Ok(head.starts_with(b"HTTP/1.1 200"))
}
