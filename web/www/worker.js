// The engine's Dedicated Worker: it owns the WebGPU device and the model, and talks to the page only by messages,
// so the page never blocks on the GPU. Model bytes are read a range at a time (synchronous HTTP Range requests for
// a served model, an OPFS access handle for a stored one), so the file never sits whole in memory.
import init, { Engine, JsSource, lossSvg, profile } from '/pkg/ferrogem_web.js';
import * as storage from '/storage.js';

let engine = null;
let cancelRequested = false;
let openFile = null; // the open model's reader; a stored one holds its access handle while the engine may read PLE rows

const post = (message, transfer = []) => self.postMessage(message, transfer);

function requestSync(url, range) {
  const xhr = new XMLHttpRequest();
  xhr.open('GET', url, false);
  xhr.responseType = 'arraybuffer';
  xhr.setRequestHeader('Range', range);
  xhr.send();
  return xhr;
}

// A served model: (offset, length) => Uint8Array over HTTP Range, and its length from the first byte's
// Content-Range (`bytes 0-0/LENGTH`), one request with no HEAD.
function servedFile(url) {
  const first = requestSync(url, 'bytes=0-0');
  const total = /\/(\d+)$/.exec(first.getResponseHeader('Content-Range') || '');
  if (first.status !== 206 || !total) throw new Error(`${url}: HTTP ${first.status}, no byte ranges (no such model?)`);
  const read = (offset, length) => {
    if (length === 0) return new Uint8Array(0);
    const xhr = requestSync(url, `bytes=${offset}-${offset + length - 1}`);
    if (xhr.status !== 206) throw new Error(`${url}: HTTP ${xhr.status} for ${length} bytes at ${offset}`);
    return new Uint8Array(xhr.response);
  };
  return { bytes: Number(total[1]), read, close() {} };
}

async function fileFor({ served, stored }) {
  const file = served ? servedFile(`/models/${encodeURIComponent(served)}`) : await storage.open(stored);
  return { ...file, stored };
}

const memory = () => JSON.parse(engine.memory());

// The engine hands its memory snapshot to its own callbacks while it loads or generates (at most twice a second):
// calling back into it meanwhile is not allowed.
const postMemory = (json) => json && post({ type: 'memory', memory: JSON.parse(json) });

function release() {
  engine.unload();
  if (openFile) openFile.close();
  openFile = null;
}

const handlers = {
  async init({ downlevel }) {
    if (!navigator.gpu) throw new Error('this browser offers no WebGPU to workers (navigator.gpu is missing)');
    await init();
    engine = await Engine.create(downlevel);
    post({ type: 'ready', device: JSON.parse(engine.device()), memory: memory() });
    post({ type: 'stored', models: await storage.stored().catch(() => []) });
  },
  // Copies a picked file or a URL into OPFS; the page then opens it as a stored model.
  async keep({ file, url, name }) {
    const progress = (done, total) => post({ type: 'progress', what: 'copying', done, total });
    const cancelled = () => cancelRequested;
    let kept;
    try {
      kept = file ? await storage.keepFile(file, progress, cancelled) : await storage.download(url, name, progress, cancelled);
    } catch (e) {
      throw new Error(await storage.explain(e));
    } finally {
      // The list first, so that the page can select what was kept.
      post({ type: 'stored', models: await storage.stored().catch(() => []) });
    }
    post({ type: 'kept', name: kept });
  },
  async forget({ name }) {
    // A loaded model's file is locked by its access handle: unload it first, and say so.
    if (openFile && openFile.stored === name) {
      release();
      post({ type: 'unloaded', memory: memory() });
    }
    await storage.forget(name);
    post({ type: 'stored', models: await storage.stored() });
  },
  async open({ model, maxChunk, nCtx }) {
    release();
    const file = await fileFor(model);
    openFile = file;
    const name = model.served || model.stored;
    const source = new JsSource(name, file.bytes, file.read);
    const started = performance.now();
    const progress = (done, total, memoryJson) => {
      post({ type: 'progress', what: 'loading', done, total });
      postMemory(memoryJson);
    };
    const summary = JSON.parse(engine.load(source, maxChunk || 0, nCtx || 0, progress));
    post({ type: 'loaded', summary, seconds: (performance.now() - started) / 1000, memory: memory() });
  },
  async generate({ prompt, messages, settings }) {
    const onText = (text, memoryJson) => {
      post({ type: 'text', text });
      postMemory(memoryJson);
    };
    const cancelled = () => cancelRequested;
    const json = JSON.stringify(settings);
    const result = messages
      ? await engine.chat(JSON.stringify(messages), json, onText, cancelled)
      : await engine.generate(engine.tokenize(prompt), json, onText, cancelled);
    post({ type: 'done', result: JSON.parse(result), memory: memory() });
  },
  async save({ app }) {
    const bytes = await engine.saveSession(JSON.stringify(app));
    post({ type: 'saved', bytes }, [bytes.buffer]);
  },
  async restore({ bytes }) {
    post({ type: 'restored', restored: JSON.parse(await engine.restoreSession(new Uint8Array(bytes))), memory: memory() });
  },
  async conformance({ maxElements, grad }) {
    const onRow = (line, status) => post({ type: 'case', line, status });
    const ops = JSON.parse(await engine.checkOps(maxElements, grad, onRow));
    post({ type: 'case', line: 'the built-in tiny Gemma 4 against HF transformers and llama.cpp…', status: 'running' });
    const model = JSON.parse(await engine.checkModel());
    post({ type: 'conformance', ops, model, memory: memory() });
  },
  // The profile runs on a device of its own with the profile's limits; the page's model is released first, so
  // the device holds only what the profile measures.
  async profile({ model, deviceProfile, promptTokens, genTokens, nCtx }) {
    release();
    const file = await fileFor(model);
    try {
      const source = new JsSource(model.served || model.stored, file.bytes, file.read);
      const progress = (done, total) => post({ type: 'progress', what: 'loading', done, total });
      const onToken = (done, total) => post({ type: 'progress', what: 'decoding', done, total });
      const run = JSON.parse(await profile(source, deviceProfile, promptTokens, genTokens, nCtx, progress, onToken));
      post({ type: 'profiled', run, memory: memory() });
    } finally {
      file.close();
    }
  },
  // Trains a fresh adapter on the loaded model; the engine is busy until it returns, so each step's chart comes
  // from the free function lossSvg.
  async train({ jsonl, settings }) {
    const rows = []; // loss.csv's rows, as finetune writes them
    const chart = () => lossSvg(Float64Array.from(rows, (r) => r.loss));
    const onStep = (step, loss, lr, memoryJson) => {
      rows.push({ step, split: 'train', loss, lr });
      postMemory(memoryJson);
      post({ type: 'trainStep', step, loss, lr, steps: settings.steps, chart: chart() });
    };
    const started = performance.now();
    const r = await engine.train(jsonl, JSON.stringify(settings), undefined, undefined, onStep);
    const seconds = (performance.now() - started) / 1000;
    const model = r.adapter_model;
    post({
      type: 'trained', rows, config: r.adapter_config, model, seconds, chart: chart(), memory: memory(),
    }, [model.buffer]);
  },
  // Puts the adapter `train` returned on the loaded model, beside any applied before, for the chat.
  async useAdapter({ config, model }) {
    const labels = engine.applyAdapter('trained', config, model, 1.0);
    post({ type: 'adapterApplied', labels, memory: memory() });
  },
  async memory() {
    post({ type: 'memory', memory: memory() });
  },
  async trajectory() {
    post({ type: 'trajectory', csv: engine.memoryTrajectory() });
  },
};

async function handle(data) {
  try {
    const handler = handlers[data.type];
    if (!handler) throw new Error(`unknown message ${data.type}`);
    await handler(data);
  } catch (e) {
    post({ type: 'error', during: data.type, message: String((e && e.message) || e) });
  }
}

// Messages run one after another (a load never starts before the device is ready, nor a generation during a load);
// only `cancel` acts at once, so it can stop the generation or the copy that is running.
let queue = Promise.resolve();
// A new job clears an earlier cancel when it is queued, not when it starts, so that a cancel sent while it waits
// in the queue still stops it.
self.onmessage = ({ data }) => {
  if (data.type === 'cancel') cancelRequested = true;
  else {
    if (data.type === 'keep' || data.type === 'generate') cancelRequested = false;
    queue = queue.then(() => handle(data));
  }
};
