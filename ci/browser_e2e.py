#!/usr/bin/env python3
"""The page end to end in headless Chromium, driven through chromedriver's W3C WebDriver protocol (standard library
only): `ferrogem serve` serves a tiny model, the page loads it in its worker over HTTP Range and generates greedy
tokens, which must equal native `ferrogem generate`'s token for token; the memory panel must show the model's GPU
bytes as native `generate` measured them; a screenshot must not be blank. Exits non-zero on any failure, including
a browser or WebGPU adapter that did not start.

usage: ci/browser_e2e.py FERROGEM_BINARY PKG_DIR MODELS_DIR MODEL_FILE [--tokens 16] [--prompt TEXT]
"""
import argparse, base64, json, os, shutil, socket, struct, subprocess, sys, time, urllib.parse, urllib.request, zlib

CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu-sandbox", "--enable-unsafe-webgpu",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
               "--disable-quic", "--disable-dev-shm-usage", "--window-size=1000,900"]


def fail(message):
    print(f"ci/browser_e2e.py: FAIL {message}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webdriver(base, method, path, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read())["value"]
    except urllib.error.HTTPError as e:
        fail(f"WebDriver {method} {path}: {e.read().decode(errors='replace')[:500]}")


def png_is_blank(png):
    """True when every pixel row of the screenshot is one colour: the IDAT stream decompressed and compared."""
    pos, idat, width, channels = 8, b"", 0, 4
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunk = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, colour_type = struct.unpack(">I", chunk[:4])[0], chunk[9]
            channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(colour_type, 4)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * channels
    # Filter bytes aside, a blank image's rows are all one pixel repeated (filter 0) or all zero deltas.
    values = set()
    for row in range(len(raw) // stride):
        values.update(raw[row * stride + 1:(row + 1) * stride])
        if len(values) > 8:
            return False
    return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ferrogem"), p.add_argument("pkg"), p.add_argument("models"), p.add_argument("model")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--prompt", default="The capital of France is")
    p.add_argument("--timeout", type=float, default=600)
    a = p.parse_args()
    chromedriver = shutil.which("chromedriver") or fail("no chromedriver: bash ci/setup.sh browser")

    native = subprocess.run([a.ferrogem, "generate", "--model", os.path.join(a.models, a.model), "--prompt", a.prompt,
                             "-n", str(a.tokens), "--temp", "0", "--json"], capture_output=True, text=True)
    if native.returncode != 0:
        fail(f"native generate: {native.stderr[-2000:]}")
    native = json.loads(native.stdout)

    serve = subprocess.Popen([a.ferrogem, "serve", "--port", "0", "--models", a.models, "--pkg", a.pkg],
                             stdout=subprocess.PIPE, text=True)
    driver_port = free_port()
    driver = subprocess.Popen([chromedriver, f"--port={driver_port}"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        line = serve.stdout.readline().split()
        if line[:1] != ["serving"]:
            fail(f"`ferrogem serve` did not start (exit {serve.wait()}); its first line: {' '.join(line)!r}")
        url = line[1]
        base = f"http://127.0.0.1:{driver_port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/status", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": shutil.which("chromium") or "/usr/bin/chromium", "args": CHROME_ARGS}}}}
        session = webdriver(base, "POST", "/session", caps)["sessionId"]
        s = f"/session/{session}"
        query = urllib.parse.urlencode({"model": a.model, "prompt": a.prompt, "n": a.tokens, "autorun": 1})
        started = time.time()
        webdriver(base, "POST", s + "/url", {"url": f"{url}?{query}"})
        script = ("return {status: document.getElementById('status').textContent, result: window.ferrogemResult,"
                  " error: window.ferrogemError, memory: window.ferrogemMemory,"
                  " output: document.getElementById('output').textContent,"
                  " speed: document.getElementById('speed').textContent}")
        while True:
            state = webdriver(base, "POST", s + "/execute/sync", {"script": script, "args": []})
            if state["result"] or state["error"] or "failed" in state["status"] or "no WebGPU" in state["status"]:
                break
            if time.time() - started > a.timeout:
                fail(f"the page did not finish in {a.timeout} s; it says: {state['status']}")
            time.sleep(0.5)
        seconds = time.time() - started
        if not state["result"]:
            fail(f"the page says: {state['status']}")
        shot = base64.b64decode(webdriver(base, "GET", s + "/screenshot"))
        webdriver(base, "DELETE", s)
    finally:
        serve.kill()
        driver.kill()

    failures = []
    got, want = state["result"]["tokens"], native["tokens"]
    if got != want:
        failures.append(f"tokens {got} differ from native {want}")
    if state["result"]["text"] != native["text"] or state["output"] != native["text"]:
        failures.append(f"text {state['output']!r} (streamed) / {state['result']['text']!r} differ from native"
                        f" {native['text']!r}")
    # The memory panel after generating against native generate's measure at the same point: the same model,
    # caches and scratch; only uniform and split-plan details may differ with the adapter's limits (the real 270M:
    # 64 bytes of 327 MB between SwiftShader and lavapipe), so 0.01% and never more than 1 MiB.
    live = state["memory"]["live_bytes"]
    if abs(live - native["live_bytes_after"]) > min(1e-4 * native["live_bytes_after"], 1 << 20):
        failures.append(f"memory panel {live} live bytes, native generate {native['live_bytes_after']}")
    if png_is_blank(shot):
        failures.append("the screenshot is blank")
    print(f"ci/browser_e2e.py: {a.model}: {len(got)} tokens {'equal' if got == want else 'DIFFERENT'} to native in"
          f" {seconds:.1f} s; {state['speed']}; {live} GPU bytes live (native {native['live_bytes_after']});"
          f" wasm memory {state['memory']['wasm_memory_bytes']} bytes; screenshot {len(shot)} bytes")
    if failures:
        fail("; ".join(failures))
    print("ci/browser_e2e.py: passed")


if __name__ == "__main__":
    main()
