// The page: it asks the worker for everything and only renders what comes back. Query parameters drive it
// unattended (the end-to-end test, a phone on the network):
//   ?model=NAME       a served model;   ?url=URL&name=NAME   a URL copied into this browser's storage (OPFS) first;
//   ?pick=1           wait for a file picked in the file input, then keep it in OPFS
//   &autorun=1        load, then send the prompt (autorun=load: load only)
//   &prompt=TEXT&n=16&template=0        the prompt, tokens to generate, and no chat template (a raw completion)
//   &conformance=ELEMENTS               then run the conformance tab with cases up to ELEMENTS elements
//   &train=STEPS&train_data=JSONL&train_lr=RATE&train_seq_len=N   then train a fresh adapter (after conformance)
//   &train_chat=1                       then apply the trained adapter ('Use in chat') and generate again
//   &downlevel=1                        WebGPU's default limits and no optional feature
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const status = (text, isError = false) => {
  $('status').textContent = text;
  $('status').className = isError ? 'error' : '';
};
const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
let worker;
const send = (message, transfer = []) => worker.postMessage(message, transfer);
let messages = []; // the conversation, in the engine's chat message format
let trainedAdapter = null; // the last training's { config, model }, for 'Use in chat'
let chatAfterTraining = false; // ?train_chat: the generation that follows applying the trained adapter
let served = [];
let stored = [];
const downloads = {};

function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = Object.assign(document.createElement('a'), { href: url, download: name });
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

function offer(button, name, text, type) {
  downloads[button] = () => download(name, text, type);
  $(button).disabled = false;
  $(button).onclick = downloads[button];
}

function showMemory(memory) {
  const rows = memory.by_category.map(([category, live, peak]) => `${category}: ${live} live, ${peak} peak`);
  rows.push(`total: ${memory.live_bytes} live, ${memory.peak_bytes} peak; wasm memory ${memory.wasm_memory_bytes}`);
  $('memory').textContent = rows.join('\n');
  if (memory.chart) $('chart').innerHTML = memory.chart;
  window.ferrogemMemory = memory;
}

// What the device lacks and what runs instead, said once, when the device is ready.
function notices(device) {
  const said = [];
  if (device.downlevel) said.push('downlevel: WebGPU default limits and no optional feature, as asked.');
  else {
    if (!device.f16) said.push('This adapter has no shader-f16: weights and caches are computed in f32 (the downlevel path).');
    if (!device.subgroups) said.push('No subgroups: reductions go through workgroup memory.');
  }
  $('notices').textContent = said.join(' ');
}

function fillModels() {
  const select = $('model');
  const keep = select.value;
  select.innerHTML = '';
  const group = (label, entries) => {
    if (!entries.length) return;
    const g = document.createElement('optgroup');
    g.label = label;
    for (const e of entries) g.append(new Option(e.text, e.value));
    select.append(g);
  };
  group('served by ferrogem serve', served.map((m) => ({ text: `${m.name} (${mb(m.bytes)})`, value: `served:${m.name}` })));
  group('kept in this browser', stored.map((m) => ({
    text: `${m.name} (${m.bytes === null ? 'in use' : mb(m.bytes)}${m.complete ? '' : ', partial: Download resumes it'})`,
    value: `${m.complete ? 'stored' : 'partial'}:${m.name}`,
  })));
  if (keep) select.value = keep;
}

function selectedModel() {
  const [kind, ...rest] = $('model').value.split(':');
  const name = rest.join(':');
  if (kind === 'served') return { served: name };
  if (kind === 'stored') return { stored: name };
  if (kind === 'partial') throw new Error(`${name} is only partly downloaded: Download resumes it`);
  throw new Error('no model: start `ferrogem serve --models DIR`, pick a file or download a URL');
}

function settings() {
  const stop = $('stop').value.split('\n').filter((s) => s.length);
  return {
    max_tokens: Number($('max-tokens').value), temperature: Number($('temperature').value),
    top_k: Number($('top-k').value), top_p: Number($('top-p').value), min_p: Number($('min-p').value),
    seed: Number($('seed').value), stop,
  };
}

// An f32 (the engine's learning rate) as Rust prints it: the fewest digits that read back as the same f32, so the
// page's loss.csv says 0.01 where a plain JS number would say 0.009999999776482582.
function f32Text(x) {
  for (let digits = 1; digits < 10; digits++) {
    const text = x.toPrecision(digits);
    if (Math.fround(Number(text)) === x) return String(Number(text));
  }
  return String(x);
}

function trainSettings() {
  const number = (id) => Number($(id).value);
  return {
    steps: number('train-steps'), seq_len: number('train-seq-len'), rank: number('train-rank'),
    alpha: number('train-alpha'), lr: number('train-lr'), schedule: $('train-schedule').value,
    warmup: number('train-warmup'), clip: number('train-clip'), seed: number('train-seed'),
    targets: $('train-targets').value.split(',').map((t) => t.trim()).filter((t) => t.length),
  };
}

function addTurn(role, text) {
  const p = Object.assign(document.createElement('p'), { className: role, textContent: `${role}: ${text}` });
  $('transcript').append(p);
}

function busy(on) {
  for (const id of ['load', 'generate', 'run-conformance', 'run-profile', 'download']) $(id).disabled = on;
  $('run-train').disabled = on || !window.ferrogemLoaded;
}

const on = {
  ready(data) {
    $('device').textContent = JSON.stringify(data.device, null, 1);
    showMemory(data.memory);
    notices(data.device);
    status(`WebGPU ready: ${data.device.adapter.name}${data.device.downlevel ? ' (downlevel)' : ''}`);
    busy(false);
    $('file').disabled = false;
    $('generate').disabled = true;
    if (params.get('url')) send({ type: 'keep', url: params.get('url'), name: params.get('name') || 'model.gguf' });
    else if (params.get('pick')) status('pick a model file to keep in this browser');
    else if (params.get('autorun')) $('load').click();
    else if (params.get('conformance')) $('run-conformance').click();
  },
  stored(data) {
    stored = data.models;
    fillModels();
  },
  kept(data) {
    status(`${data.name} is kept in this browser`);
    $('cancel-copy').disabled = true;
    $('model').value = `stored:${data.name}`;
    busy(false);
    $('generate').disabled = !window.ferrogemLoaded;
    if (params.get('autorun')) $('load').click();
  },
  progress(data) {
    $('progress').value = data.total ? data.done / data.total : 0;
    const unit = data.what === 'decoding' ? (n) => `${n} tokens` : mb;
    status(`${data.what}: ${unit(data.done)} of ${unit(data.total)}`);
  },
  loaded(data) {
    showMemory(data.memory);
    status(`loaded ${data.summary.name} (${data.summary.arch}, ${data.summary.layers} layers) in ${data.seconds.toFixed(1)} s`);
    window.ferrogemLoaded = { summary: data.summary, seconds: data.seconds, memory: data.memory };
    busy(false);
    $('save').disabled = $('restore').disabled = false;
    if (params.get('autorun') === '1') $('generate').click();
  },
  text(data) {
    $('output').textContent += data.text;
  },
  done(data) {
    const r = data.result;
    showMemory(data.memory);
    const decoded = Math.max(r.tokens.length - 1, 0);
    $('speed').textContent = `prompt ${r.prompt_tokens} tokens (${r.reused_tokens} reused) in ${r.prefill_ms.toFixed(0)} ms; ` +
      `${r.tokens.length} generated, decode ${(decoded / (r.decode_ms / 1000)).toFixed(2)} tok/s; stop: ${r.stop}`;
    if ($('use-template').checked) {
      messages.push({ role: 'assistant', content: r.text });
      addTurn('assistant', r.text);
    }
    busy(false);
    $('cancel').disabled = true;
    status('done');
    if (chatAfterTraining) {
      chatAfterTraining = false;
      window.ferrogemTrainedResult = r;
      return;
    }
    window.ferrogemResult = r;
    // What the page showed after this generation, before anything later (a trained adapter's run) replaces it.
    window.ferrogemGenerated = { output: $('output').textContent, memory: window.ferrogemMemory };
    if (params.get('conformance')) $('run-conformance').click();
    else if (params.get('train')) $('run-train').click();
  },
  saved(data) {
    download('session.fgkv', data.bytes, 'application/octet-stream');
    status(`session saved: ${mb(data.bytes.byteLength)}`);
  },
  restored(data) {
    messages = data.restored.app.messages || [];
    $('transcript').innerHTML = '';
    for (const m of messages) addTurn(m.role, m.content);
    showMemory(data.memory);
    status(`session restored: ${data.restored.cached_tokens} tokens in the cache`);
  },
  case(data) {
    const line = Object.assign(document.createElement('div'), { textContent: data.line });
    if (data.status === 'fail') line.className = 'fail';
    $('cases').append(line);
  },
  conformance(data) {
    const { ops, model } = data;
    showMemory(data.memory);
    const modelPassed = model.failures.length === 0;
    $('conformance-summary').textContent = `${ops.passed} passed, ${ops.failed} failed, ${ops.not_supported} not ` +
      `supported over ${ops.families} op families; ${model.model}: ${modelPassed ? 'passed' : 'FAILED'} ` +
      // A NaN or infinite error arrives as null (JSON has neither).
      `(NMSE vs HF ${Number(model.nmse_vs_hf ?? Infinity).toExponential(2)}, ` +
      `argmax = HF ${model.argmax_equal_hf}/${model.positions})`;
    for (const f of [...ops.failures, ...model.failures]) on.case({ line: f, status: 'fail' });
    offer('conformance-json', 'check-ops.json', ops.json, 'application/json');
    offer('conformance-csv', 'check-ops.csv', ops.csv, 'text/csv');
    offer('model-json', 'check-model.json', JSON.stringify(model, null, 1), 'application/json');
    busy(false);
    $('generate').disabled = !window.ferrogemLoaded;
    status(ops.failed || !modelPassed ? 'conformance: FAILED' : 'conformance: passed', ops.failed || !modelPassed);
    window.ferrogemConformance = { passed: ops.passed, failed: ops.failed, families: ops.families, model };
    if (params.get('train')) $('run-train').click();
  },
  trainStep(data) {
    $('progress').value = (data.step + 1) / data.steps;
    status(`training: step ${data.step + 1} of ${data.steps}, loss ${data.loss.toFixed(4)}, rate ${data.lr.toExponential(2)}`);
    $('loss-chart').innerHTML = data.chart;
  },
  trained(data) {
    const { rows, seconds } = data;
    showMemory(data.memory);
    $('loss-chart').innerHTML = data.chart;
    const loss = (row) => (row ? row.loss.toFixed(4) : '-');
    const text = `trained ${rows.length} steps in ${seconds.toFixed(1)} s: loss ${loss(rows[0])} → ${loss(rows[rows.length - 1])}`;
    $('train-summary').textContent = text;
    offer('adapter-config', 'adapter_config.json', data.config, 'application/json');
    offer('adapter-model', 'adapter_model.safetensors', data.model, 'application/octet-stream');
    const csv = ['step,split,loss,lr', ...rows.map((r) => `${r.step},${r.split},${r.loss},${f32Text(r.lr)}`)].join('\n');
    offer('loss-csv', 'loss.csv', `${csv}\n`, 'text/csv');
    busy(false);
    $('generate').disabled = !window.ferrogemLoaded;
    window.ferrogemTrained = { rows, seconds, adapterBytes: data.model.byteLength };
    trainedAdapter = { config: data.config, model: data.model };
    $('use-adapter').disabled = !window.ferrogemLoaded;
    status(text);
    if (params.get('train_chat')) $('use-adapter').click();
  },
  adapterApplied(data) {
    showMemory(data.memory);
    messages = [];
    $('transcript').innerHTML = '';
    busy(false);
    $('generate').disabled = !window.ferrogemLoaded;
    status(`adapters applied: ${data.labels.join(', ')}; the chat starts over with them`);
    if (params.get('train_chat')) {
      chatAfterTraining = true;
      $('generate').click();
    }
  },
  profiled(data) {
    const { run } = data;
    const s = run.summary;
    showMemory(data.memory);
    const lines = [`GPU peak ${s.peak_bytes} bytes (${mb(s.peak_bytes)}); wasm memory ${mb(run.wasm_memory_bytes)}`];
    for (const [phase, bytes] of Object.entries(s.peak_by_phase)) lines.push(`  during ${phase}: ${bytes}`);
    if (s.plan_vs_measured) lines.push(`plan ${s.plan_vs_measured.planned_bytes} vs measured ${s.plan_vs_measured.measured_peak_bytes}`);
    if (s.decode) lines.push(`decode: ${s.decode.dispatches_per_token.toFixed(1)} dispatches per token, bind-group hit rate ${s.decode.steady_state.hit_rate.toFixed(4)}`);
    if (run.error) lines.push(`stopped: ${run.error}`);
    $('profile-summary').textContent = lines.join('\n');
    window.ferrogemLoaded = null;
    $('profile-chart').innerHTML = run.trajectory_svg;
    offer('summary-json', 'summary.json', run.summary_json, 'application/json');
    offer('trajectory-csv', 'trajectory.csv', run.trajectory_csv, 'text/csv');
    offer('trajectory-svg', 'trajectory.svg', run.trajectory_svg, 'image/svg+xml');
    busy(false);
    $('generate').disabled = $('use-adapter').disabled = true;
    status(run.error ? `profile stopped: ${run.error}` : 'profile done (the model was unloaded: Load it again to chat)', !!run.error);
  },
  unloaded(data) {
    showMemory(data.memory);
    window.ferrogemLoaded = null;
    $('generate').disabled = $('save').disabled = $('restore').disabled = $('run-train').disabled = true;
    $('use-adapter').disabled = true;
    status('the model was unloaded to forget its file');
  },
  trajectory(data) {
    download('trajectory.csv', data.csv, 'text/csv');
  },
  memory(data) {
    showMemory(data.memory);
  },
  error(data) {
    const lost = /device was lost/.test(data.message);
    status(`${data.during} failed: ${data.message}${lost ? ' Reload the page to get a new device.' : ''}`, true);
    $('reload').hidden = !lost;
    busy(false);
    $('generate').disabled = !window.ferrogemLoaded;
    $('cancel').disabled = $('cancel-copy').disabled = true;
    if (data.during === 'generate' && $('use-template').checked) messages.pop();
    window.ferrogemError = data.message;
  },
};

function wire() {
  for (const button of document.querySelectorAll('nav button')) {
    button.onclick = () => {
      for (const b of document.querySelectorAll('nav button')) b.classList.toggle('active', b === button);
      for (const tab of document.querySelectorAll('.tab')) tab.hidden = tab.id !== `tab-${button.dataset.tab}`;
    };
  }
  $('downlevel').onchange = () => {
    params.set('downlevel', $('downlevel').checked ? '1' : '0');
    location.search = params.toString();
  };
  $('reload').onclick = () => location.reload();
  const guarded = (f) => () => {
    try {
      f();
    } catch (e) {
      status(e.message, true);
      window.ferrogemError = e.message;
    }
  };
  $('load').onclick = guarded(() => {
    const model = selectedModel();
    busy(true);
    window.ferrogemLoaded = null;
    send({ type: 'open', model });
  });
  $('file').onchange = () => {
    const file = $('file').files[0];
    if (!file) return;
    busy(true);
    $('cancel-copy').disabled = false;
    send({ type: 'keep', file });
  };
  $('download').onclick = guarded(() => {
    const url = $('url').value.trim();
    if (!url) throw new Error('no URL to download');
    const name = decodeURIComponent(new URL(url, location.href).pathname.split('/').pop() || 'model.gguf');
    busy(true);
    $('cancel-copy').disabled = false;
    send({ type: 'keep', url, name });
  });
  $('cancel-copy').onclick = () => send({ type: 'cancel' });
  $('forget').onclick = guarded(() => {
    const [kind, ...rest] = $('model').value.split(':');
    if (kind === 'served') throw new Error('a served model is not kept in this browser');
    send({ type: 'forget', name: rest.join(':') });
  });
  $('generate').onclick = () => {
    const text = $('prompt').value;
    $('output').textContent = '';
    busy(true);
    $('cancel').disabled = false;
    if ($('use-template').checked) {
      messages.push({ role: 'user', content: text });
      addTurn('user', text);
      $('prompt').value = '';
      send({ type: 'generate', messages, settings: settings() });
    } else {
      send({ type: 'generate', prompt: text, settings: settings() });
    }
  };
  $('cancel').onclick = () => send({ type: 'cancel' });
  $('new-chat').onclick = () => {
    messages = [];
    $('transcript').innerHTML = '';
  };
  $('save').onclick = () => send({ type: 'save', app: { messages } });
  $('restore').onchange = async () => {
    const file = $('restore').files[0];
    if (file) send({ type: 'restore', bytes: await file.arrayBuffer() });
  };
  $('run-conformance').onclick = () => {
    $('cases').textContent = '';
    busy(true);
    status('conformance: running the op registry on this device…');
    send({ type: 'conformance', maxElements: Number($('max-elements').value), grad: $('grad').checked });
  };
  $('run-profile').onclick = guarded(() => {
    const model = selectedModel();
    busy(true);
    window.ferrogemLoaded = null; // the worker releases the page's model before it profiles
    send({
      type: 'profile', model, deviceProfile: $('device-profile').value, promptTokens: Number($('prompt-tokens').value),
      genTokens: Number($('gen-tokens').value), nCtx: Number($('profile-ctx').value),
    });
  });
  $('run-train').onclick = () => {
    busy(true);
    for (const id of ['adapter-config', 'adapter-model', 'loss-csv', 'use-adapter']) $(id).disabled = true;
    $('train-summary').textContent = '';
    $('generate').disabled = true;
    $('loss-chart').innerHTML = '';
    status('training: building the trainer…');
    send({ type: 'train', jsonl: $('train-data').value, settings: trainSettings() });
  };
  $('use-adapter').onclick = () => {
    busy(true);
    $('use-adapter').disabled = true;
    status('applying the trained adapter…');
    send({ type: 'useAdapter', config: trainedAdapter.config, model: trainedAdapter.model });
  };
  $('train-file').onchange = async () => {
    const file = $('train-file').files[0];
    if (file) $('train-data').value = await file.text();
  };
  $('memory-csv').onclick = () => send({ type: 'trajectory' });
}

async function start() {
  if (!navigator.gpu) {
    status('This browser has no WebGPU: use a recent Chrome, Edge or Safari (or enable WebGPU in its settings).', true);
    return;
  }
  const downlevel = params.get('downlevel') === '1';
  $('downlevel').checked = downlevel;
  if (params.get('prompt')) $('prompt').value = params.get('prompt');
  if (params.get('n')) $('max-tokens').value = params.get('n');
  if (params.get('template') === '0') $('use-template').checked = false;
  if (params.get('conformance')) $('max-elements').value = params.get('conformance');
  if (params.get('train')) $('train-steps').value = params.get('train');
  if (params.get('train_data')) $('train-data').value = params.get('train_data');
  if (params.get('train_lr')) $('train-lr').value = params.get('train_lr');
  if (params.get('train_seq_len')) $('train-seq-len').value = params.get('train_seq_len');
  busy(true);
  wire();
  served = await (await fetch('/models')).json();
  fillModels();
  if (params.get('model')) $('model').value = `served:${params.get('model')}`;

  worker = new Worker('/worker.js', { type: 'module' });
  worker.onmessage = ({ data }) => {
    try {
      on[data.type](data);
    } catch (e) {
      // A reply the page cannot show must not leave it stuck with its buttons disabled.
      on.error({ during: `showing ${data.type}`, message: e.message });
    }
  };
  worker.onerror = (e) => status(`the worker failed: ${e.message} (is the engine built? bash ci/build-web.sh)`, true);
  send({ type: 'init', downlevel });
}

start().catch((e) => status(`the page failed: ${e.message}`, true));
