// The page: it asks the worker for everything and only renders what comes back. Query parameters drive it
// unattended (the end-to-end test, a phone on the network): ?model=NAME&prompt=TEXT&n=16&downlevel=1&autorun=1;
// autorun=load stops after loading (a model too slow to run on a software adapter, loaded to measure memory).
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const status = (text, isError = false) => {
  $('status').textContent = text;
  $('status').className = isError ? 'error' : '';
};

function showMemory(memory) {
  const rows = memory.by_category.map(([category, live, peak]) => `${category}: ${live} live, ${peak} peak`);
  rows.push(`total: ${memory.live_bytes} live, ${memory.peak_bytes} peak; wasm memory ${memory.wasm_memory_bytes}`);
  $('memory').textContent = rows.join('\n');
  window.ferrogemMemory = memory;
}

async function start() {
  if (!navigator.gpu) {
    status('This browser has no WebGPU: use a recent Chrome, Edge or Safari (or enable WebGPU).', true);
    return;
  }
  const downlevel = params.get('downlevel') === '1';
  $('downlevel').checked = downlevel;
  $('downlevel').onchange = () => {
    params.set('downlevel', $('downlevel').checked ? '1' : '0');
    location.search = params.toString();
  };
  const models = await (await fetch('/models')).json();
  for (const m of models) $('model').add(new Option(`${m.name} (${(m.bytes / 1e6).toFixed(1)} MB)`, m.name));
  if (params.get('model')) $('model').value = params.get('model');
  if (params.get('prompt')) $('prompt').value = params.get('prompt');
  if (params.get('n')) $('max-tokens').value = params.get('n');

  const worker = new Worker('/worker.js', { type: 'module' });
  const send = (message) => worker.postMessage(message);
  worker.onmessage = ({ data }) => {
    switch (data.type) {
      case 'ready':
        $('device').textContent = JSON.stringify(data.device, null, 1);
        showMemory(data.memory);
        status(`WebGPU ready: ${data.device.adapter.name}${data.device.downlevel ? ' (downlevel)' : ''}`);
        if (params.get('autorun')) $('load').click();
        break;
      case 'progress':
        $('progress').value = data.uploaded / data.total;
        status(`loading: ${(data.uploaded / 1e6).toFixed(1)} of ${(data.total / 1e6).toFixed(1)} MB`);
        break;
      case 'loaded':
        showMemory(data.memory);
        status(`loaded ${data.summary.name} (${data.summary.arch}, ${data.summary.layers} layers) in ${data.seconds.toFixed(1)} s`);
        $('generate').disabled = false;
        window.ferrogemLoaded = { summary: data.summary, seconds: data.seconds, memory: data.memory };
        if (params.get('autorun') === '1') $('generate').click();
        break;
      case 'text':
        $('output').textContent += data.text;
        break;
      case 'done': {
        const r = data.result;
        showMemory(data.memory);
        const decoded = Math.max(r.tokens.length - 1, 0);
        $('speed').textContent = `prompt ${r.prompt_tokens} tokens in ${r.prefill_ms.toFixed(0)} ms; ` +
          `${r.tokens.length} generated, decode ${(decoded / (r.decode_ms / 1000)).toFixed(2)} tok/s; stop: ${r.stop}`;
        $('generate').disabled = false;
        $('cancel').disabled = true;
        window.ferrogemResult = r;
        status('done');
        break;
      }
      case 'memory':
        showMemory(data.memory);
        break;
      case 'error':
        status(`${data.during} failed: ${data.message}`, true);
        $('generate').disabled = false;
        $('cancel').disabled = true;
        window.ferrogemError = data.message;
        break;
    }
  };
  worker.onerror = (e) => status(`the worker failed: ${e.message} (is the engine built? bash ci/build-web.sh)`, true);
  $('load').onclick = () => {
    const name = $('model').value;
    if (!name) return status('no model is served: start `ferrogem serve --models DIR`', true);
    $('generate').disabled = true;
    send({ type: 'open', url: `/models/${encodeURIComponent(name)}`, name });
  };
  $('generate').onclick = () => {
    $('output').textContent = '';
    $('generate').disabled = true;
    $('cancel').disabled = false;
    send({ type: 'generate', prompt: $('prompt').value, maxTokens: Number($('max-tokens').value) });
  };
  $('cancel').onclick = () => send({ type: 'cancel' });
  send({ type: 'init', downlevel });
}

start().catch((e) => status(`the page failed: ${e.message}`, true));
