//! The model-load check: every text tensor uploaded (split under the binding limit), read back bit for bit, the
//! accountant checked against wgpu's own counters while loaded, and everything released afterwards.

use ferrogem::gpu::{Category, Context, Phase, SplitTensor, counters_agree};
use ferrogem::models::ModelFile;
use ferrogem::models::skipped_by_text_model;

pub fn round_trip(ctx: &Context, model: &ModelFile) -> Result<String, String> {
    let text = |e: ferrogem::gpu::GpuError| e.to_string();
    ctx.wait_idle().map_err(text)?;
    let (buffers0, bytes0) = ctx.wgpu_buffer_counters();
    let live0 = ctx.memory().live_bytes;
    ctx.set_phase(Phase::Load);
    let mut loaded = Vec::new();
    let (mut file_bytes, mut skipped) = (0u64, 0usize);
    for t in model.gguf.tensors() {
        if skipped_by_text_model(t.name()).is_some() {
            skipped += 1;
            continue;
        }
        let data = t.bytes(model.source.as_ref()).map_err(|e| e.to_string())?;
        let rows = t.elems() / t.dims().first().copied().unwrap_or(1).max(1);
        let row_bytes = t.size_bytes() / rows.max(1);
        let tensor = SplitTensor::upload(ctx, t.name(), Category::Weights, &data, row_bytes).map_err(text)?;
        file_bytes += t.size_bytes();
        loaded.push((t, tensor));
    }
    ctx.wait_idle().map_err(text)?;
    let (buffers1, bytes1) = ctx.wgpu_buffer_counters();
    let live1 = ctx.memory().live_bytes;
    let parts: usize = loaded.iter().map(|(_, s)| s.parts.len()).sum();
    let gpu_bytes: u64 = loaded.iter().map(|(_, s)| s.size_bytes()).sum();
    if live1 - live0 != gpu_bytes || !counters_agree((parts as u64, gpu_bytes), (buffers1 - buffers0, bytes1 - bytes0))
    {
        return Err(format!(
            "accountant {} bytes, wgpu counters {} bytes in {} buffers; expected {gpu_bytes} bytes in {parts} buffers",
            live1 - live0,
            bytes1 - bytes0,
            buffers1 - buffers0
        ));
    }
    for (info, tensor) in &loaded {
        let want = info.bytes(model.source.as_ref()).map_err(|e| e.to_string())?;
        let mut offset = 0usize;
        for (part, &(_, rows)) in tensor.parts.iter().zip(&tensor.plan.parts) {
            let got = pollster::block_on(ctx.read_bytes(part)).map_err(text)?;
            let len = (rows * tensor.plan.row_bytes) as usize;
            if got[..len] != want[offset..offset + len] {
                return Err(format!("tensor `{}` differs after the round trip through the GPU", info.name()));
            }
            offset += len;
        }
    }
    drop(loaded);
    ctx.set_phase(Phase::Idle);
    ctx.wait_idle().map_err(text)?;
    if ctx.memory().live_bytes != live0 || ctx.wgpu_buffer_counters() != (buffers0, bytes0) {
        return Err("buffers outlived the model".into());
    }
    Ok(format!(
        "{} tensors ({skipped} skipped), {file_bytes} bytes in {parts} buffers, bit-exact; accountant = wgpu counters; all freed",
        model.gguf.tensors().len() - skipped
    ))
}
