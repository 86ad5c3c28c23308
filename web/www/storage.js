// Models kept in the origin private file system (OPFS), for the worker: a picked file or a URL is copied in once
// (a URL resumably: an interrupted copy stays as NAME.part and the next download asks only for the bytes after it),
// then read a range at a time through a synchronous access handle, so the model never sits whole in memory and
// survives a reload.
const PART = '.part';
const COPY_CHUNK_BYTES = 8 << 20;

async function modelsDir() {
  if (!navigator.storage || !navigator.storage.getDirectory) {
    throw new Error('this browser has no origin private file system (OPFS) for workers; use a served model');
  }
  return (await navigator.storage.getDirectory()).getDirectoryHandle('models', { create: true });
}

// An error worth showing as it is: a full quota says how much there is and what to do.
export async function explain(e) {
  if (e && e.name === 'QuotaExceededError') {
    const { usage = 0, quota = 0 } = navigator.storage.estimate ? await navigator.storage.estimate() : {};
    const mb = (bytes) => (bytes / 1e6).toFixed(0);
    return `the browser's storage quota is full (${mb(usage)} of ${mb(quota)} MB used by this site): ` +
      'remove stored models (Forget) or use a served model, which needs no copy';
  }
  return String((e && e.message) || e);
}

// [{name, bytes, complete}] for every model kept here, unfinished downloads included.
export async function stored() {
  const out = [];
  for await (const [name, handle] of (await modelsDir()).entries()) {
    if (handle.kind !== 'file') continue;
    const complete = !name.endsWith(PART);
    // A file the engine has open (a loaded model's access handle) cannot be read for its size: null.
    const bytes = await handle.getFile().then((f) => f.size, () => null);
    out.push({ name: complete ? name : name.slice(0, -PART.length), bytes, complete });
  }
  return out.sort((a, b) => a.name.localeCompare(b.name));
}

// Removes a kept model and its partial download; the caller closes its access handle first.
export async function forget(name) {
  const dir = await modelsDir();
  for (const file of [name, name + PART]) {
    await dir.removeEntry(file).catch((e) => {
      if (e.name !== 'NotFoundError') throw e;
    });
  }
}

// Appends `next()`'s chunks to NAME.part from byte `have` on and renames it NAME when `next` is done.
async function fill(name, have, total, next, progress, cancelled) {
  const dir = await modelsDir();
  const part = await dir.getFileHandle(name + PART, { create: true });
  const handle = await part.createSyncAccessHandle();
  try {
    handle.truncate(have);
    for (;;) {
      if (cancelled()) throw new Error(`download of ${name} cancelled at ${have} of ${total} bytes; it is kept and resumes from there`);
      const chunk = await next(have);
      if (!chunk) break;
      handle.write(chunk, { at: have });
      have += chunk.byteLength;
      progress(have, total);
    }
    handle.flush();
  } finally {
    handle.close();
  }
  if (total && have !== total) throw new Error(`${name}: ${have} bytes copied, ${total} expected`);
  await part.move(name);
}

// Copies a picked File into OPFS (read slice by slice: workers may read Files synchronously).
export async function keepFile(file, progress, cancelled) {
  const reader = new FileReaderSync();
  await fill(file.name, 0, file.size, async (at) => {
    if (at >= file.size) return null;
    return new Uint8Array(reader.readAsArrayBuffer(file.slice(at, at + COPY_CHUNK_BYTES)));
  }, progress, cancelled);
  return file.name;
}

// Downloads `url` into OPFS as `name`, resuming an earlier partial copy with a Range request. A server that ignores
// the range (200) restarts the copy from byte 0.
export async function download(url, name, progress, cancelled) {
  const existing = (await stored()).find((m) => m.name === name && !m.complete);
  let have = (existing && existing.bytes) || 0;
  const response = await fetch(url, have ? { headers: { Range: `bytes=${have}-` } } : {});
  if (response.status === 416 && have) {
    // Nothing after the bytes already kept: the copy was complete and only its rename was missed.
    await (await (await modelsDir()).getFileHandle(name + PART)).move(name);
    return name;
  }
  if (response.status === 200) have = 0;
  else if (response.status !== 206) throw new Error(`${url}: HTTP ${response.status}`);
  // Content-Range may be hidden from a cross-origin page; then the length is what remains after `have`.
  const range = /^bytes (\d+)-\d+\/(\d+)$/.exec(response.headers.get('Content-Range') || '');
  if (range && Number(range[1]) !== have) throw new Error(`${url}: asked for bytes from ${have}, sent from ${range[1]}`);
  const length = Number(response.headers.get('Content-Length') || 0);
  const total = range ? Number(range[2]) : (response.status === 206 ? have : 0) + length;
  const body = response.body.getReader();
  try {
    await fill(name, have, total, async () => {
      const { done, value } = await body.read();
      return done ? null : value;
    }, progress, cancelled);
  } finally {
    body.cancel().catch(() => {});
  }
  return name;
}

// A stored model opened for reading: `read(offset, length)` is what JsSource calls; `close()` ends it. One open
// model at a time holds the file's access handle, so a second tab cannot write it meanwhile.
export async function open(name) {
  const handle = await (await (await modelsDir()).getFileHandle(name)).createSyncAccessHandle();
  return {
    bytes: handle.getSize(),
    read(offset, length) {
      const out = new Uint8Array(length);
      const got = handle.read(out, { at: offset });
      if (got !== length) throw new Error(`${name}: ${got} of ${length} bytes read at ${offset} (a truncated file?)`);
      return out;
    },
    close: () => handle.close(),
  };
}
