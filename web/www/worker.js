// The engine's Dedicated Worker: it owns the WebGPU device and the model, and talks to the page only by messages,
// so the page never blocks on the GPU. Model bytes are read a range at a time through synchronous HTTP Range
// requests (allowed in workers), so the file never sits whole in memory.
import init, { Engine, JsSource } from '/pkg/ferrogem_web.js';

let engine = null;
let cancelRequested = false;

const post = (message) => self.postMessage(message);

function requestSync(url, range) {
  const xhr = new XMLHttpRequest();
  xhr.open('GET', url, false);
  xhr.responseType = 'arraybuffer';
  xhr.setRequestHeader('Range', range);
  xhr.send();
  return xhr;
}

// (offset, length) => Uint8Array over HTTP Range: what JsSource calls for the header, each tensor and PLE rows.
function rangeReader(url) {
  return (offset, length) => {
    if (length === 0) return new Uint8Array(0);
    const xhr = requestSync(url, `bytes=${offset}-${offset + length - 1}`);
    if (xhr.status !== 206) throw new Error(`${url}: HTTP ${xhr.status} for ${length} bytes at ${offset}`);
    return new Uint8Array(xhr.response);
  };
}

// The file's length from the first byte's Content-Range (`bytes 0-0/LENGTH`): one request, no HEAD needed.
function sizeOf(url) {
  const xhr = requestSync(url, 'bytes=0-0');
  const total = /\/(\d+)$/.exec(xhr.getResponseHeader('Content-Range') || '');
  if (xhr.status !== 206 || !total) throw new Error(`${url}: HTTP ${xhr.status}, no byte ranges (no such model?)`);
  return Number(total[1]);
}

const memory = () => JSON.parse(engine.memory());

const handlers = {
  async init({ downlevel }) {
    if (!navigator.gpu) throw new Error('this browser offers no WebGPU to workers (navigator.gpu is missing)');
    await init();
    engine = await Engine.create(downlevel);
    post({ type: 'ready', device: JSON.parse(engine.device()), memory: memory() });
  },
  async open({ url, name, maxChunk, nCtx }) {
    const bytes = sizeOf(url);
    const source = new JsSource(name, bytes, rangeReader(url));
    const started = performance.now();
    const progress = (uploaded, total) => post({ type: 'progress', uploaded, total });
    const summary = JSON.parse(engine.load(source, maxChunk || 0, nCtx || 0, progress));
    post({ type: 'loaded', summary, seconds: (performance.now() - started) / 1000, memory: memory() });
  },
  async generate({ prompt, maxTokens }) {
    cancelRequested = false;
    const ids = engine.tokenize(prompt);
    const onText = (text) => post({ type: 'text', text });
    const result = JSON.parse(await engine.generate(ids, maxTokens, onText, () => cancelRequested));
    post({ type: 'done', result, memory: memory() });
  },
  async cancel() {
    cancelRequested = true;
  },
  async memory() {
    post({ type: 'memory', memory: memory() });
  },
};

self.onmessage = async ({ data }) => {
  try {
    const handler = handlers[data.type];
    if (!handler) throw new Error(`unknown message ${data.type}`);
    await handler(data);
  } catch (e) {
    post({ type: 'error', during: data.type, message: String((e && e.message) || e) });
  }
};
