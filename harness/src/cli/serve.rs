//! `ferrogem serve`: the browser build over HTTP. The page (web/www/, compiled in) at `/`, the wasm-bindgen output
//! of web/ at `/pkg/`, and models at `/models/<name>` with Range requests, so the worker reads a model a range at a
//! time instead of downloading it whole. Every response carries COOP/COEP (cross-origin isolation, which the page
//! needs for precise timers and, later, shared memory).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Port to listen on; 0 picks a free one. The URL is printed either way.
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to listen on: 127.0.0.1 keeps it to this machine; 0.0.0.0 lets a phone on the same network open it.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// A folder whose .gguf files are served at /models/<file name>.
    #[arg(long)]
    models: Option<PathBuf>,
    /// Also serve every model of the local Ollama store ($OLLAMA_MODELS, else ~/.ollama/models) at
    /// /models/<name:tag>, named as `ollama list` names them. Entries with no GGUF to serve are skipped with a warning.
    #[arg(long)]
    ollama: bool,
    /// The wasm-bindgen output of web/ (`bash ci/build-web.sh` writes it to target/web/pkg).
    #[arg(long, default_value = "target/web/pkg")]
    pkg: PathBuf,
}

/// The page's files, compiled in so the binary serves the page it was built with.
const PAGE: [(&str, &str, &str); 4] = [
    ("/", "text/html; charset=utf-8", include_str!("../../../web/www/index.html")),
    ("/app.js", "text/javascript; charset=utf-8", include_str!("../../../web/www/app.js")),
    ("/worker.js", "text/javascript; charset=utf-8", include_str!("../../../web/www/worker.js")),
    ("/storage.js", "text/javascript; charset=utf-8", include_str!("../../../web/www/storage.js")),
];

/// The files of `--pkg` the page loads.
const PKG_FILES: [(&str, &str); 2] =
    [("ferrogem_web.js", "text/javascript; charset=utf-8"), ("ferrogem_web_bg.wasm", "application/wasm")];

pub fn run(args: ServeArgs) -> ferrogem::Result<ExitCode> {
    let models = model_table(&args)?;
    for (file, _) in PKG_FILES {
        if !args.pkg.join(file).is_file() {
            eprintln!(
                "ferrogem serve: {} has no {file}: run `bash ci/build-web.sh` (the page will say the engine is missing)",
                args.pkg.display()
            );
        }
    }
    let address = format!("{}:{}", args.host, args.port);
    let server = Server::http(&address).map_err(|e| ferrogem::Error::Io {
        action: "listen on",
        path: address.clone(),
        message: e.to_string(),
    })?;
    let port = server.server_addr().to_ip().map_or(args.port, |a| a.port());
    println!("serving http://{}:{port}/ ({} models)", args.host, models.len());
    for name in models.keys() {
        println!("  /models/{name}");
    }
    let models = std::sync::Arc::new(models);
    for request in server.incoming_requests() {
        let (models, pkg) = (std::sync::Arc::clone(&models), args.pkg.clone());
        // One thread per request: a long model download must not hold up the page's other requests.
        std::thread::spawn(move || respond(request, &models, &pkg));
    }
    Ok(ExitCode::SUCCESS)
}

/// URL name → file, from --models and --ollama.
fn model_table(args: &ServeArgs) -> ferrogem::Result<BTreeMap<String, PathBuf>> {
    let mut models = BTreeMap::new();
    if let Some(dir) = &args.models {
        let io = |e: std::io::Error| ferrogem::Error::Io {
            action: "list the models folder",
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            if name.ends_with(".gguf") && path.is_file() {
                models.insert(name, path);
            }
        }
    }
    if args.ollama {
        let store = ferrogem::ollama::OllamaStore::from_env()?;
        for name in store.list()? {
            // One entry with no GGUF to serve (a cloud model, a safetensors import, a broken pull) must not keep
            // the rest of the store off the page.
            let resolved = match store.resolve_name(&name) {
                Ok(resolved) => resolved,
                Err(e) => {
                    eprintln!("ferrogem serve: skipping {name}: {e}");
                    continue;
                }
            };
            if !resolved.adapters.is_empty() {
                eprintln!(
                    "ferrogem serve: {name} has adapter layers, which the page cannot apply: it runs the base model"
                );
            }
            models.insert(name.to_string(), resolved.model_blob);
        }
    }
    Ok(models)
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

/// What every response carries: cross-origin isolation, and no caching of a page or model that may be rebuilt.
fn common_headers() -> Vec<Header> {
    vec![
        header("Cross-Origin-Opener-Policy", "same-origin"),
        header("Cross-Origin-Embedder-Policy", "require-corp"),
        header("Cross-Origin-Resource-Policy", "same-origin"),
        header("Cache-Control", "no-cache"),
    ]
}

fn respond(request: Request, models: &BTreeMap<String, PathBuf>, pkg: &Path) {
    let path = request.url().split('?').next().unwrap_or("/").to_owned();
    let result = if !matches!(request.method(), Method::Get | Method::Head) {
        request.respond(text(405, "only GET and HEAD"))
    } else if let Some((_, mime, body)) = PAGE.iter().find(|(p, _, _)| *p == path) {
        request.respond(bytes(body.as_bytes().to_vec(), mime))
    } else if path == "/models" {
        let list: Vec<_> = models
            .iter()
            .map(|(name, file)| {
                let bytes = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
                serde_json::json!({ "name": name, "bytes": bytes })
            })
            .collect();
        request.respond(bytes(serde_json::to_vec(&list).unwrap_or_default(), "application/json"))
    } else if let Some(name) = path.strip_prefix("/models/") {
        // `%XX` escapes in the path segment: Ollama names with `:` or `/` may come escaped.
        match models.get(percent_encoding::percent_decode_str(name).decode_utf8_lossy().as_ref()) {
            Some(file) => serve_file(request, file, "application/octet-stream"),
            None => request.respond(text(404, &format!("no model named {name}"))),
        }
    } else if let Some((file, mime)) = path.strip_prefix("/pkg/").and_then(|f| PKG_FILES.iter().find(|(n, _)| *n == f))
    {
        serve_file(request, &pkg.join(file), mime)
    } else {
        request.respond(text(404, "not found"))
    };
    // A client that went away mid-response (a cancelled download) is not the server's error.
    let _ = result;
}

fn with_headers<R: Read>(mut response: Response<R>, mime: &str) -> Response<R> {
    for h in common_headers() {
        response.add_header(h);
    }
    response.add_header(header("Content-Type", mime));
    response
}

fn bytes(body: Vec<u8>, mime: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    with_headers(Response::from_data(body), mime)
}

fn text(status: u16, message: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    bytes(format!("{message}\n").into_bytes(), "text/plain; charset=utf-8").with_status_code(status)
}

/// The file, or the one byte range a `Range` header asks for (206; 416 when it is not satisfiable).
fn serve_file(request: Request, path: &Path, mime: &str) -> std::io::Result<()> {
    let Ok(mut file) = File::open(path) else {
        return request.respond(text(404, &format!("{} is missing", path.display())));
    };
    let len = file.metadata()?.len();
    let range = request.headers().iter().find(|h| h.field.equiv("Range")).map(|h| h.value.as_str().to_owned());
    let (status, start, end) = match range.as_deref().map(|r| parse_range(r, len)) {
        None => (200, 0, len),
        Some(Some((start, end))) => (206, start, end),
        Some(None) => {
            let mut response = text(416, "range not satisfiable");
            response.add_header(header("Content-Range", &format!("bytes */{len}")));
            return request.respond(response);
        }
    };
    file.seek(SeekFrom::Start(start))?;
    let body = if *request.method() == Method::Head { file.take(0) } else { file.take(end - start) };
    // A Content-Length rather than chunks (tiny_http's default above 32 KiB), so a client sees the size up front.
    let response = Response::new(StatusCode(status), Vec::new(), body, Some((end - start) as usize), None);
    let mut response = with_headers(response.with_chunked_threshold(usize::MAX), mime);
    response.add_header(header("Accept-Ranges", "bytes"));
    if status == 206 {
        response.add_header(header("Content-Range", &format!("bytes {start}-{}/{len}", end - 1)));
    }
    request.respond(response)
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` as a half-open [start, end) within `len`; None when malformed or
/// unsatisfiable. Several ranges in one request are not served (the worker never asks for them).
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let n: u64 = suffix.parse().ok()?;
            (len.saturating_sub(n), len)
        }
        (first, "") => (first.parse().ok()?, len),
        (first, last) => (first.parse().ok()?, last.parse::<u64>().ok()?.saturating_add(1).min(len)),
    };
    (start < end).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-3", 10), Some((0, 4)));
        assert_eq!(parse_range("bytes=4-", 10), Some((4, 10)));
        assert_eq!(parse_range("bytes=-3", 10), Some((7, 10)));
        assert_eq!(parse_range("bytes=5-100", 10), Some((5, 10)));
        assert_eq!(parse_range("bytes=10-", 10), None);
        assert_eq!(parse_range("bytes=3-2", 10), None);
        assert_eq!(parse_range("items=0-3", 10), None);
        assert_eq!(parse_range("bytes=a-3", 10), None);
        assert_eq!(parse_range("bytes=0-1,4-5", 10), None);
    }
}
