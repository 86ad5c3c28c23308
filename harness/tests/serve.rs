//! `ferrogem serve` over real sockets: the page and models with the isolation headers and MIME types, byte ranges
//! (206, 416), and nothing outside what it was told to serve. No GPU.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve() -> Server {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../golden/fixtures");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferrogem"))
        .args(["serve", "--port", "0", "--models", fixtures, "--pkg", "/nonexistent"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.split_whitespace().nth(1).unwrap_or_else(|| panic!("serve printed {line:?}"));
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    Server { child, address }
}

/// (status, headers lower-cased, body) of one request.
fn get(server: &Server, method: &str, path: &str, range: Option<&str>) -> (u16, String, Vec<u8>) {
    let mut stream = TcpStream::connect(&server.address).unwrap();
    let range = range.map(|r| format!("Range: {r}\r\n")).unwrap_or_default();
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: x\r\n{range}Connection: close\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8_lossy(&response[..split]).to_lowercase();
    let status = head[9..12].parse().unwrap();
    (status, head, response[split + 4..].to_vec())
}

#[test]
fn serves_the_page_models_and_ranges() {
    let server = serve();
    let (status, head, body) = get(&server, "GET", "/", None);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(head.contains("cross-origin-opener-policy: same-origin"), "{head}");
    assert!(head.contains("cross-origin-embedder-policy: require-corp"), "{head}");
    assert!(String::from_utf8_lossy(&body).contains("/app.js"));
    let (status, head, _) = get(&server, "GET", "/worker.js", None);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");

    let (status, _, body) = get(&server, "GET", "/models", None);
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let tiny = list.as_array().unwrap().iter().find(|m| m["name"] == "tiny-gemma4-f32.gguf").expect("listed");
    let len = tiny["bytes"].as_u64().unwrap();

    let (status, head, body) = get(&server, "GET", "/models/tiny-gemma4-f32.gguf", Some("bytes=0-3"));
    assert_eq!((status, body.as_slice()), (206, &b"GGUF"[..]));
    assert!(head.contains(&format!("content-range: bytes 0-3/{len}")), "{head}");
    let (status, _, body) = get(&server, "GET", "/models/tiny-gemma4-f32.gguf", Some("bytes=-10"));
    assert_eq!((status, body.len()), (206, 10));
    let (status, _, body) = get(&server, "GET", "/models/tiny-gemma4-f32.gguf", None);
    assert_eq!((status, body.len() as u64), (200, len));
    let (status, head, _) = get(&server, "GET", "/models/tiny-gemma4-f32.gguf", Some(&format!("bytes={len}-")));
    assert_eq!(status, 416);
    assert!(head.contains(&format!("content-range: bytes */{len}")), "{head}");

    // Only what it was told to serve: no other files, no path tricks, no writes.
    for path in ["/models/nope.gguf", "/models/..%2F..%2FCargo.toml", "/pkg/../Cargo.toml", "/Cargo.toml"] {
        assert_eq!(get(&server, "GET", path, None).0, 404, "{path}");
    }
    // --pkg names a missing folder: the engine's files are 404, and the server keeps serving.
    assert_eq!(get(&server, "GET", "/pkg/ferrogem_web_bg.wasm", None).0, 404);
    assert_eq!(get(&server, "POST", "/", None).0, 405);
    assert_eq!(get(&server, "GET", "/", None).0, 200);
}
