//! Connection limits, over real sockets: slow request heads are cut at the header-read
//! timeout, idle keep-alive connections at the idle timeout, and connections beyond the
//! cap wait unaccepted until one closes (issue 11 #7).

use std::time::{Duration, Instant};

use idlink_server::testing::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn addr(server: &TestServer) -> String {
    server.base_url.trim_start_matches("http://").to_owned()
}

/// Keeps a request head unfinished, one header line every 200 ms, until the server
/// closes the connection; returns how long that took (`None`: still open at `give_up`).
async fn slow_client(addr: String, give_up: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(&addr).await.ok()?;
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: idlink\r\n")
        .await
        .is_err()
    {
        return Some(started.elapsed());
    }
    let mut buf = [0u8; 1024];
    while started.elapsed() < give_up {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {} // e.g. a 408 before the close
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if stream.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_slow_header_clients_are_all_closed_after_the_timeout() {
    let server = TestServer::start_with(|c| c.tenant.header_read_timeout = Some(1.0)).await;
    let clients: Vec<_> = (0..1000)
        .map(|_| tokio::spawn(slow_client(addr(&server), Duration::from_secs(6))))
        .collect();
    let mut held = 0;
    let mut slowest = Duration::ZERO;
    for client in clients {
        match client.await.unwrap() {
            Some(closed_after) => slowest = slowest.max(closed_after),
            None => held += 1,
        }
    }
    eprintln!(
        "figure: 1000 slow-header clients, header_read_timeout 1 s: {held} still open after 6 s, \
         the last closed after {slowest:?}"
    );
    assert_eq!(held, 0);
    assert!(slowest < Duration::from_secs(4), "{slowest:?}");
    // The server still serves.
    let health = reqwest::get(format!("{}/health", server.base_url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let server = TestServer::start_with(|c| c.tenant.idle_timeout = Some(1.0)).await;
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: idlink\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    let idle_since = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("closed before 5 s");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    let after = idle_since.elapsed();
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(3),
        "{after:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let server = TestServer::start_with(|c| {
        c.tenant.max_connections = Some(2);
        c.tenant.header_read_timeout = Some(30.0);
    })
    .await;
    // Two connections hold the cap with unfinished heads.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        held.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A third one connects (the kernel's backlog) but is not served.
    let mut third = TcpStream::connect(addr(&server)).await.unwrap();
    third
        .write_all(b"GET /health HTTP/1.1\r\nHost: idlink\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let waited = tokio::time::timeout(Duration::from_millis(800), third.read(&mut buf)).await;
    assert!(waited.is_err(), "served beyond the cap: {waited:?}");
    // One closes: the third is accepted and answered.
    drop(held.pop());
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

/// Reads until the server closes the connection (or 5 s pass).
async fn read_to_close(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all)).await;
    String::from_utf8_lossy(&all).into_owned()
}

/// RFC 9112 §6.1: a request with both `Content-Length` and `Transfer-Encoding` may be
/// processed by its `Transfer-Encoding` alone, and the connection must be closed after
/// the response. hyper does exactly that (it drops the `Content-Length`), so a request
/// smuggled behind such a body is never read: no proxy in front can be desynchronised.
#[tokio::test]
async fn content_length_with_transfer_encoding_closes_the_connection() {
    let server = TestServer::start().await;
    for (first, second) in [
        ("Content-Length: 5\r\nTransfer-Encoding: chunked", ""),
        ("Transfer-Encoding: chunked\r\nContent-Length: 5", ""),
        ("Content-Length: 5", "Transfer-Encoding: chunked"),
    ] {
        let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
        let extra = if second.is_empty() {
            String::new()
        } else {
            format!("{second}\r\n")
        };
        let request = format!(
            "POST /health HTTP/1.1\r\nHost: idlink\r\n{first}\r\n{extra}\r\n0\r\n\r\n\
             GET /api/v2/users HTTP/1.1\r\nHost: idlink\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut stream).await;
        assert_eq!(
            answer.matches("HTTP/1.1 ").count(),
            1,
            "one response, the smuggled request is never read: {answer}"
        );
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
        // Closed: a further request gets nothing.
        let again = stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: idlink\r\n\r\n")
            .await;
        let mut buf = [0u8; 64];
        let read = stream.read(&mut buf).await;
        assert!(again.is_err() || matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // A plain keep-alive request is not closed.
    let mut stream = TcpStream::connect(addr(&server)).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: idlink\r\n\r\nGET /health HTTP/1.1\r\nHost: idlink\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut stream).await;
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
}

/// The TLS listener is served by the same loop: a client that finishes the handshake
/// and then sends its head slowly is cut at the header-read timeout too.
#[tokio::test]
async fn slow_headers_over_tls_are_closed_too() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let mut config = idlink_server::Config {
        bind: "127.0.0.1:0".into(),
        database_url: format!("sqlite://{}", dir.path().join("idlink.db").display()),
        admin_client_id: Some("tls-admin".into()),
        admin_client_secret: Some("tls-admin-secret-0123456789abcdef".into()),
        print_credentials: false,
        tls: Some(idlink_server::tls::TlsSettings::SelfSigned {
            dir: dir.path().to_owned(),
        }),
        ..idlink_server::Config::default()
    };
    config.tenant.header_read_timeout = Some(1.0);
    let server = idlink_server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let cert = server.tls_cert_path().unwrap().to_owned();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .expect("handshake");
    tls.write_all(b"GET /health HTTP/1.1\r\nHost: idlink\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let closed = loop {
        tokio::select! {
            read = tls.read(&mut buf) => match read {
                Ok(0) | Err(_) => break Some(started.elapsed()),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if tls.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    break Some(started.elapsed());
                }
                if started.elapsed() > Duration::from_secs(6) {
                    break None;
                }
            }
        }
    };
    let closed = closed.expect("closed by the server");
    assert!(closed < Duration::from_secs(3), "{closed:?}");
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
}
