#!/usr/bin/env python3
"""The page end to end in headless Chromium, driven through chromedriver's W3C WebDriver protocol (standard library
only): `ferrogem serve` serves a tiny model, the page loads it in its worker over HTTP Range and generates greedy
tokens, which must equal native `ferrogem generate`'s token for token; the memory panel must show the model's GPU
bytes as native `generate` and native `profile` (over decode, with the same prompt and generation lengths) measured
them; a screenshot must not be blank. With --conformance the page then runs its conformance tab (the op registry's
cases up to that many elements and the built-in tiny Gemma 4, against CPU references compiled to wasm), which must
pass with no failure. With --train the page then trains a fresh LoRA adapter that many steps in its training tab,
and every step's loss must equal native `ferrogem finetune`'s on the same data and settings; the page then applies
the trained adapter ('Use in chat') and generates again, and its tokens must equal native `ferrogem generate
--adapter` with native finetune's adapter (which must change them). With --via-opfs the page first keeps the model
in the browser's origin private file system
(downloaded from its URL, or given to the file input as a picked file) and loads it from there. Exits non-zero on
any failure, including a browser or WebGPU adapter that did not start.

usage: ci/browser_e2e.py FERROGEM_BINARY PKG_DIR MODELS_DIR MODEL_FILE [--tokens 16] [--prompt TEXT]
                         [--conformance ELEMENTS] [--train STEPS] [--via-opfs url|file]
       ci/browser_e2e.py … MODEL_FILE --load-only   # load, then report GPU and wasm memory against the native plan
"""
import argparse, base64, json, os, shutil, socket, struct, subprocess, sys, time, urllib.parse, urllib.request, zlib

# The training tab's run: one text line, a rate high enough that the loss moves by far more than the tolerance.
TRAIN_DATA = '{"text": "The capital of France is Paris. The capital of Italy is Rome."}'
TRAIN_LR = "0.01"
TRAIN_SEQ_LEN = "128"
# Page (SwiftShader) against native (lavapipe): the same f32 kernels with other reduction orders, over a few steps.
TRAIN_LOSS_RTOL = 1e-3

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


def run_page(a, chromedriver, query, done_expression, pick=None):
    """Serves the models, opens the page with `query` (and with `pick`, gives that file to its file input as a
    person picking it would) and polls until `done_expression` is set or the page failed; returns the page's state,
    the seconds it took and a screenshot."""
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
        started = time.time()
        webdriver(base, "POST", s + "/url", {"url": f"{url}?{urllib.parse.urlencode(query)}"})
        if pick:
            # The file input is enabled once the worker's device is ready, and the page then asks for a file.
            asked = "return document.getElementById('status').textContent"
            while "pick a model file" not in webdriver(base, "POST", s + "/execute/sync", {"script": asked, "args": []}):
                if time.time() - started > a.timeout:
                    fail("the page never asked for a file")
                time.sleep(0.2)
            element = webdriver(base, "POST", s + "/element", {"using": "css selector", "value": "#file"})
            element_id = next(iter(element.values()))
            webdriver(base, "POST", f"{s}/element/{element_id}/value", {"text": os.path.abspath(pick)})
        script = ("return {status: document.getElementById('status').textContent, result: window.ferrogemResult,"
                  " loaded: window.ferrogemLoaded, conformance: window.ferrogemConformance, error: window.ferrogemError,"
                  " trained: window.ferrogemTrained, trained_result: window.ferrogemTrainedResult,"
                  " generated: window.ferrogemGenerated,"
                  f" speed: document.getElementById('speed').textContent, done: !!({done_expression})}}")
        while True:
            state = webdriver(base, "POST", s + "/execute/sync", {"script": script, "args": []})
            if state["done"] or state["error"] or "failed" in state["status"] or "no WebGPU" in state["status"]:
                break
            if time.time() - started > a.timeout:
                fail(f"the page did not finish in {a.timeout} s; it says: {state['status']}")
            time.sleep(0.5)
        seconds = time.time() - started
        shot = base64.b64decode(webdriver(base, "GET", s + "/screenshot"))
        webdriver(base, "DELETE", s)
    finally:
        serve.kill()
        driver.kill()
    return state, seconds, shot


def load_only(a, chromedriver):
    """Loads the model in the page and reports its GPU bytes (against the native memory plan) and wasm memory."""
    plan = subprocess.run([a.ferrogem, "profile", "--model", os.path.join(a.models, a.model), "--plan", "--out",
                           "/tmp/ferrogem-e2e-plan"], capture_output=True, text=True)
    state, seconds, _ = run_page(a, chromedriver, {"model": a.model, "autorun": "load"}, "window.ferrogemLoaded")
    if not state["loaded"]:
        fail(f"the page says: {state['status']}")
    memory = state["loaded"]["memory"]
    planned = [int(line.split()[2]) for line in plan.stdout.splitlines() if line.strip().startswith("planned peak")]
    if plan.returncode != 0 or not planned:
        fail(f"native `profile --plan`: {plan.stderr[-1000:]}")
    print(f"ci/browser_e2e.py: {a.model} loaded in {seconds:.1f} s (page: {state['loaded']['seconds']:.1f} s):"
          f" {memory['live_bytes']} GPU bytes live, {memory['peak_bytes']} peak (native plan {planned[0]});"
          f" wasm memory {memory['wasm_memory_bytes']} bytes ({memory['wasm_memory_bytes'] / 2**20:.1f} MiB)")
    # The targets: the plan within 5% (as the native profile gate), wasm memory at most 256 MiB.
    if abs(memory["peak_bytes"] - planned[0]) > 0.05 * planned[0]:
        fail(f"GPU peak {memory['peak_bytes']} is more than 5% from the plan's {planned[0]}")
    if memory["wasm_memory_bytes"] > 256 << 20:
        fail(f"wasm memory {memory['wasm_memory_bytes']} bytes is over 256 MiB")
    print("ci/browser_e2e.py: passed")


def native_profile(a, prompt_tokens, gen_tokens):
    """Native `ferrogem profile` of the model with the page's prompt and generation lengths: the live bytes of its
    last decode step."""
    out = f"/tmp/ferrogem-e2e-profile-{os.getpid()}"
    run = subprocess.run([a.ferrogem, "profile", "--model", os.path.join(a.models, a.model), "--prompt-tokens",
                          str(prompt_tokens), "--gen-tokens", str(max(gen_tokens, 1)), "--out", out],
                         capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"native profile: {run.stderr[-2000:]}")
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    shutil.rmtree(out, ignore_errors=True)
    return summary["decode"]["last_step"]["live_bytes"]


def native_finetune(a, steps):
    """Native `ferrogem finetune` with the page's training settings (the rest at both sides' defaults): the train
    losses of loss.csv, step 0 first, and native `generate` with the trained adapter (the page's prompt, greedy)."""
    out = f"/tmp/ferrogem-e2e-finetune-{os.getpid()}"
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    data = os.path.join(out, "data.jsonl")
    with open(data, "w") as f:
        f.write(TRAIN_DATA + "\n")
    run = subprocess.run([a.ferrogem, "finetune", "--model", os.path.join(a.models, a.model), "--data", data,
                          "--steps", str(steps), "--lr", TRAIN_LR, "--seq-len", TRAIN_SEQ_LEN, "--out",
                          os.path.join(out, "run")], capture_output=True, text=True)
    if run.returncode != 0:
        fail(f"native finetune: {run.stderr[-2000:]}")
    with open(os.path.join(out, "run", "loss.csv")) as f:
        rows = [line.strip().split(",") for line in f][1:]
    generated = subprocess.run([a.ferrogem, "generate", "--model", os.path.join(a.models, a.model), "--adapter",
                                os.path.join(out, "run"), "--prompt", a.prompt, "-n", str(a.tokens), "--temp", "0",
                                "--json"], capture_output=True, text=True)
    if generated.returncode != 0:
        fail(f"native generate with the trained adapter: {generated.stderr[-2000:]}")
    shutil.rmtree(out, ignore_errors=True)
    return [float(loss) for _, split, loss, _ in rows if split == "train"], json.loads(generated.stdout)["tokens"]


def compare_training(a, trained, trained_result, base_tokens):
    """The page's losses against native finetune's, and the page's tokens with its trained adapter applied against
    native generate's with native finetune's; returns (summary, failures)."""
    page = [row["loss"] for row in trained["rows"]]
    native, native_tokens = native_finetune(a, a.train)
    failures = []
    if len(page) != a.train or len(native) != a.train:
        failures.append(f"training: {len(page)} page and {len(native)} native losses for {a.train} steps")
    worst = max((abs(p - n) / max(abs(n), 1e-6) for p, n in zip(page, native)), default=float("inf"))
    if not worst <= TRAIN_LOSS_RTOL:
        failures.append(f"training: page losses {page} differ from native {native} (worst relative {worst:.2e})")
    # The comparison means something only if the steps moved the loss by more than the tolerance.
    if not native or abs(native[-1] - native[0]) <= 10 * TRAIN_LOSS_RTOL * abs(native[0]):
        failures.append(f"training: native losses {native} barely moved")
    tokens = trained_result["tokens"]
    if tokens != native_tokens:
        failures.append(f"training: tokens with the trained adapter {tokens} differ from native {native_tokens}")
    # The adapter must change what the model says, or applying it is not what is being compared.
    if native_tokens == base_tokens:
        failures.append(f"training: the trained adapter left native generate's tokens as they were: {base_tokens}")
    summary = (f"; trained {len(page)} steps in {trained['seconds']:.1f} s, loss {page[0]:.4f} → {page[-1]:.4f},"
               f" worst relative difference to native finetune {worst:.2e}; with it applied, {len(tokens)} tokens"
               f" {'equal' if tokens == native_tokens else 'DIFFERENT'} to native generate --adapter")
    return summary, failures


def main():
    p = argparse.ArgumentParser()
    p.add_argument("ferrogem"), p.add_argument("pkg"), p.add_argument("models"), p.add_argument("model")
    p.add_argument("--tokens", type=int, default=16)
    p.add_argument("--prompt", default="The capital of France is")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--load-only", action="store_true")
    p.add_argument("--conformance", type=int, metavar="ELEMENTS")
    p.add_argument("--train", type=int, metavar="STEPS")
    p.add_argument("--via-opfs", choices=["url", "file"])
    a = p.parse_args()
    chromedriver = shutil.which("chromedriver") or fail("no chromedriver: bash ci/setup.sh browser")

    if a.load_only:
        return load_only(a, chromedriver)
    native = subprocess.run([a.ferrogem, "generate", "--model", os.path.join(a.models, a.model), "--prompt", a.prompt,
                             "-n", str(a.tokens), "--temp", "0", "--json"], capture_output=True, text=True)
    if native.returncode != 0:
        fail(f"native generate: {native.stderr[-2000:]}")
    native = json.loads(native.stdout)

    query = {"prompt": a.prompt, "n": a.tokens, "template": 0, "autorun": 1}
    pick = None
    if a.via_opfs == "url":
        query.update({"url": f"/models/{a.model}", "name": a.model})
    elif a.via_opfs == "file":
        query["pick"] = 1
        pick = os.path.join(a.models, a.model)
    else:
        query["model"] = a.model
    done = "window.ferrogemResult"
    if a.conformance is not None:
        query["conformance"] = a.conformance
        done = "window.ferrogemConformance"
    if a.train is not None:
        query.update({"train": a.train, "train_data": TRAIN_DATA, "train_lr": TRAIN_LR, "train_seq_len": TRAIN_SEQ_LEN,
                      "train_chat": 1})
        done = "window.ferrogemTrainedResult"
    state, seconds, shot = run_page(a, chromedriver, query, done, pick)
    missing = (a.conformance is not None and not state["conformance"]) or (
        a.train is not None and not (state["trained"] and state["trained_result"]))
    if not state["result"] or missing:
        fail(f"the page says: {state['status']}" + (f" (error: {state['error']})" if state["error"] else ""))

    failures = []
    got, want = state["result"]["tokens"], native["tokens"]
    if got != want:
        failures.append(f"tokens {got} differ from native {want}")
    output, memory = state["generated"]["output"], state["generated"]["memory"]
    if state["result"]["text"] != native["text"] or output != native["text"]:
        failures.append(f"text {output!r} (streamed) / {state['result']['text']!r} differ from native"
                        f" {native['text']!r}")
    # The memory panel after generating against native generate's measure at the same point: the same model,
    # caches and scratch; only uniform and split-plan details may differ with the adapter's limits (the real 270M:
    # 64 bytes of 327 MB between SwiftShader and lavapipe), so 0.01% and never more than 1 MiB.
    live = memory["live_bytes"]
    if abs(live - native["live_bytes_after"]) > min(1e-4 * native["live_bytes_after"], 1 << 20):
        failures.append(f"memory panel {live} live bytes, native generate {native['live_bytes_after']}")
    # And against native `profile` of the same shape: its live bytes over decode (weights, caches and scratch).
    profiled = native_profile(a, state["result"]["prompt_tokens"], len(got))
    if abs(live - profiled) > min(1e-4 * profiled, 1 << 20):
        failures.append(f"memory panel {live} live bytes, native profile {profiled} over decode")
    if png_is_blank(shot):
        failures.append("the screenshot is blank")
    conformance = ""
    if a.conformance is not None:
        c = state["conformance"]
        model_failures = c["model"]["failures"]
        conformance = (f"; conformance: {c['passed']} op cases passed, {c['failed']} failed over {c['families']}"
                       f" families, {c['model']['model']} {'passed' if not model_failures else 'FAILED'}")
        if c["failed"] or c["passed"] == 0 or model_failures:
            failures.append(f"conformance: {c['failed']} op cases failed, {c['passed']} passed; model: {model_failures}")
    training = ""
    if a.train is not None:
        training, training_failures = compare_training(a, state["trained"], state["trained_result"], want)
        failures += training_failures
    print(f"ci/browser_e2e.py: {a.model}: {len(got)} tokens {'equal' if got == want else 'DIFFERENT'} to native in"
          f" {seconds:.1f} s; {state['speed']}; {live} GPU bytes live (native generate {native['live_bytes_after']},"
          f" profile {profiled});"
          f" wasm memory {memory['wasm_memory_bytes']} bytes; screenshot {len(shot)} bytes"
          f"{f' (kept in OPFS from a {a.via_opfs})' if a.via_opfs else ''}{conformance}{training}")
    if failures:
        fail("; ".join(failures))
    print("ci/browser_e2e.py: passed")


if __name__ == "__main__":
    main()
