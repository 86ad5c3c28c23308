//! The debug path: when asked, each intermediate of a forward pass is copied, right after the op that makes it,
//! into a buffer of its own, and read back after the submission. Off, it records nothing and allocates nothing.
//! Names follow the CPU reference's traces (`embedding`, `per_layer_inputs`, `layer 3 q`, …, `final_norm`).

use crate::error::{Error, Result};
use crate::gpu::{Batch, Category, Context, GpuBuffer};

/// One intermediate: `[n_tokens][elems / n_tokens]` f32, token-major.
#[derive(Debug, Clone)]
pub struct Traced {
    pub name: String,
    pub values: Vec<f32>,
}

pub struct Tracer {
    ctx: Option<Context>,
    grabbed: Vec<(String, GpuBuffer, u64)>,
    failed: Option<Error>,
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn off() -> Tracer {
        Tracer { ctx: None, grabbed: Vec::new(), failed: None }
    }

    pub fn on(ctx: &Context) -> Tracer {
        Tracer { ctx: Some(ctx.clone()), grabbed: Vec::new(), failed: None }
    }

    /// Records a copy of the first `elems` f32 of `src` (no-op when off).
    pub fn grab(&mut self, batch: &mut Batch, name: &str, src: &GpuBuffer, elems: u64) {
        let Some(ctx) = &self.ctx else { return };
        if self.failed.is_some() || elems == 0 {
            return;
        }
        let bytes = elems * 4;
        match ctx.alloc(&format!("trace {name}"), Category::Scratch, bytes, None) {
            Ok(dst) => {
                batch.copy(src, 0, &dst, 0, bytes);
                self.grabbed.push((name.to_owned(), dst, elems));
            }
            Err(e) => self.failed = Some(e.into()),
        }
    }

    /// Reads every grabbed buffer back (after the batch was submitted) and frees them.
    pub async fn finish(self) -> Result<Vec<Traced>> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let Some(ctx) = self.ctx else { return Ok(Vec::new()) };
        let mut out = Vec::with_capacity(self.grabbed.len());
        for (name, buffer, elems) in self.grabbed {
            let bytes = ctx.read_bytes(&buffer).await?;
            let values: Vec<f32> = bytemuck::pod_collect_to_vec(&bytes[..elems as usize * 4]);
            // The head runs in groups of rows: their pieces of `final_norm` join into one trace.
            match out.iter_mut().find(|t: &&mut Traced| t.name == name) {
                Some(earlier) => earlier.values.extend(values),
                None => out.push(Traced { name, values }),
            }
        }
        Ok(out)
    }
}
