//! `ferrogem serve` over real sockets: the page and models with the isolation headers and MIME types, byte ranges
//! (206, 416), and nothing outside what it was told to serve; `--ollama` on fake stores built in temp dirs. No GPU.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};

struct Server {
    child: Child,
    address: String,
    /// Held open while the server runs: serve prints the model list after the URL, and a closed pipe kills it
    /// (SIGPIPE).
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Stops the server and returns what it wrote to stderr.
    fn stderr(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut stderr = String::new();
        self.child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        stderr
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../golden/fixtures").join(name)
}

/// `ferrogem serve --port 0 <args>` with OLLAMA_MODELS set to `ollama_models`, listening; or, when it stopped
/// before printing its URL, its exit status and stderr. Serve writes to stderr only before it listens, so that
/// pipe never fills.
fn start(args: &[&str], ollama_models: Option<&Path>) -> Result<Server, (ExitStatus, String)> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrogem"));
    command.args(["serve", "--port", "0", "--pkg", "/nonexistent"]).args(args);
    if let Some(dir) = ollama_models {
        command.env("OLLAMA_MODELS", dir);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    if line.is_empty() {
        let status = child.wait().unwrap();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        return Err((status, stderr));
    }
    let url = line.split_whitespace().nth(1).unwrap_or_else(|| panic!("serve printed {line:?}"));
    let address = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    Ok(Server { child, address, _stdout: stdout })
}

fn serve() -> Server {
    let fixtures = golden("").display().to_string();
    start(&["--models", &fixtures], None).unwrap_or_else(|(status, stderr)| panic!("{status}: {stderr}"))
}

fn serve_ollama(store: &Store) -> Server {
    start(&["--ollama"], Some(&store.root)).unwrap_or_else(|(status, stderr)| panic!("{status}: {stderr}"))
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
    for module in ["/worker.js", "/storage.js"] {
        let (status, head, _) = get(&server, "GET", module, None);
        assert_eq!(status, 200, "{module}");
        assert!(head.contains("content-type: text/javascript"), "{module}: {head}");
    }

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

/// A fake Ollama store under the temp dir, laid out as `ollama pull` leaves one: manifests/<host>/<namespace>/
/// <model>/<tag> and blobs/sha256-<hex>. Removed on drop.
struct Store {
    root: PathBuf,
}

impl Store {
    fn new(label: &str) -> Self {
        let root = std::env::temp_dir().join(format!("ferrogem-serve-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("blobs")).unwrap();
        Self { root }
    }

    /// Writes the manifest at `relative` (under manifests/), each layer a (media type, bytes) stored as its blob.
    fn add(&self, relative: &str, layers: &[(&str, &[u8])]) {
        use sha2::Digest;
        let layers: Vec<_> = layers
            .iter()
            .map(|(media_type, bytes)| {
                let hex: String = sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect();
                std::fs::write(self.root.join(format!("blobs/sha256-{hex}")), bytes).unwrap();
                serde_json::json!({"mediaType": media_type, "digest": format!("sha256:{hex}"), "size": bytes.len()})
            })
            .collect();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "layers": layers,
        });
        let path = self.root.join("manifests").join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, manifest.to_string()).unwrap();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

const MODEL: &str = "application/vnd.ollama.image.model";

/// (name, bytes) of each entry of `/models`.
fn listed(server: &Server) -> Vec<(String, u64)> {
    let (status, _, body) = get(server, "GET", "/models", None);
    assert_eq!(status, 200);
    let list: serde_json::Value = serde_json::from_slice(&body).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| (m["name"].as_str().unwrap().to_owned(), m["bytes"].as_u64().unwrap()))
        .collect()
}

/// A 206 with exactly bytes 100..1100 of `blob`, the blob's length in Content-Range, and cross-origin isolation.
fn assert_serves_range(server: &Server, path: &str, blob: &[u8]) {
    let (status, head, body) = get(server, "GET", path, Some("bytes=100-1099"));
    assert_eq!(status, 206, "{path}: {head}");
    assert!(body == blob[100..1100], "{path}: other bytes than the blob's");
    assert!(head.contains(&format!("content-range: bytes 100-1099/{}", blob.len())), "{path}: {head}");
    assert!(head.contains("cross-origin-opener-policy: same-origin"), "{path}: {head}");
    assert!(head.contains("cross-origin-embedder-policy: require-corp"), "{path}: {head}");
}

#[test]
fn serves_ollama_models_by_name_with_ranges() {
    let store = Store::new("names");
    let (gemma3, gemma4) = (
        std::fs::read(golden("tiny-gemma3-Q4_0.gguf")).unwrap(),
        std::fs::read(golden("tiny-gemma4-Q4_0.gguf")).unwrap(),
    );
    store.add("registry.ollama.ai/library/tiny/latest", &[(MODEL, &gemma3)]);
    store.add("registry.ollama.ai/someone/tiny/q4", &[(MODEL, &gemma4)]);
    let server = serve_ollama(&store);

    // Ollama's own short names, as `ollama list` shows them: no `library/` for the default namespace.
    let expected =
        [("someone/tiny:q4".to_owned(), gemma4.len() as u64), ("tiny:latest".to_owned(), gemma3.len() as u64)];
    assert_eq!(listed(&server), expected);
    // The page asks for encodeURIComponent(name); the raw name works too.
    for path in ["/models/tiny%3Alatest", "/models/tiny:latest"] {
        assert_serves_range(&server, path, &gemma3);
    }
    for path in ["/models/someone%2Ftiny%3Aq4", "/models/someone/tiny:q4"] {
        assert_serves_range(&server, path, &gemma4);
    }
    for path in ["/models/gemma4%3Ae2b", "/models/tiny%3Aq4", "/models/other%2Ftiny%3Aq4"] {
        assert_eq!(get(&server, "GET", path, None).0, 404, "{path}");
    }
}

#[test]
fn a_model_with_an_adapter_serves_its_base_model() {
    let store = Store::new("adapter");
    let base = std::fs::read(golden("tiny-gemma3-Q4_0.gguf")).unwrap();
    let adapter = ("application/vnd.ollama.image.adapter", &b"lora gguf"[..]);
    store.add("registry.ollama.ai/library/tuned/latest", &[(MODEL, &base), adapter]);
    let server = serve_ollama(&store);
    assert_eq!(listed(&server), [("tuned:latest".to_owned(), base.len() as u64)]);
    assert_serves_range(&server, "/models/tuned%3Alatest", &base);
    let stderr = server.stderr();
    assert!(stderr.contains("tuned:latest has adapter layers"), "the base model runs without them, said: {stderr}");
}

#[test]
fn store_entries_with_no_gguf_are_skipped_and_the_rest_served() {
    let store = Store::new("skip");
    let base = std::fs::read(golden("tiny-gemma3-Q4_0.gguf")).unwrap();
    store.add("registry.ollama.ai/library/tiny/latest", &[(MODEL, &base)]);
    // What `ollama pull` leaves for a cloud model: no model layer.
    store.add("registry.ollama.ai/library/big/cloud", &[("application/vnd.ollama.image.params", b"{}")]);
    let server = serve_ollama(&store);
    assert_eq!(listed(&server), [("tiny:latest".to_owned(), base.len() as u64)]);
    assert_eq!(get(&server, "GET", "/models/big%3Acloud", None).0, 404);
    let stderr = server.stderr();
    assert!(
        stderr.contains("skipping big:cloud") && stderr.contains("no `application/vnd.ollama.image.model`"),
        "{stderr}"
    );
}

#[test]
fn a_missing_store_is_an_error_naming_it() {
    let root = std::env::temp_dir().join(format!("ferrogem-serve-absent-{}", std::process::id()));
    let Err((status, stderr)) = start(&["--ollama"], Some(&root)) else { panic!("serve started without a store") };
    assert!(!status.success());
    assert!(stderr.starts_with(&format!("error: no Ollama store at {}", root.display())), "{stderr}");
    assert!(stderr.contains("set OLLAMA_MODELS"), "{stderr}");
}
