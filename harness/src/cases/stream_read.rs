//! Cases for `stream_read`, the memory-bandwidth probe: each workgroup's sum of the elements its invocations read,
//! against the same sums in f64. In perf mode the large case is the yardstick the other cases' "% of read
//! bandwidth" and `bench`'s roofline divide by (`runner::measure_read_bandwidth`).

use super::{Built, CaseResult, OpCase, OutType, guarded_output, seeded, upload_f32};
use crate::tolerance::max_nmse;
use ferrogem::gpu::Context;
use ferrogem::ops::stream_read::{STREAM_READ_WG_SIZE, stream_read};
use std::rc::Rc;

pub struct StreamReadCase {
    pub n_vec4: u64,
    pub n_workgroups: u32,
}

/// Workgroups of the bandwidth measurement: a few per SM of the largest GPUs, each invocation then reading 32
/// vec4s of a 256 MiB buffer.
pub const MEASURE_WORKGROUPS: u32 = 2048;

pub fn cases() -> Vec<Box<dyn OpCase>> {
    // A tail shorter than one loop step of four, more invocations than elements, and the measurement's shape on
    // 64 MiB.
    [(1003, 3), (100, 2), (1 << 16, 64), (1 << 22, MEASURE_WORKGROUPS)]
        .into_iter()
        .map(|(n_vec4, n_workgroups)| Box::new(StreamReadCase { n_vec4, n_workgroups }) as Box<dyn OpCase>)
        .collect()
}

impl OpCase for StreamReadCase {
    fn op(&self) -> &'static str {
        "stream_read"
    }

    fn vars(&self) -> String {
        format!("type=f32,vec4={},workgroups={}", self.n_vec4, self.n_workgroups)
    }

    fn max_nmse(&self) -> f64 {
        max_nmse(self.op(), "f32")
    }

    fn flops(&self) -> u64 {
        4 * self.n_vec4
    }

    /// What the kernel reads; its writes (4 bytes per workgroup) are noise beside it.
    fn bytes(&self) -> u64 {
        16 * self.n_vec4
    }

    fn elems(&self) -> u64 {
        4 * self.n_vec4
    }

    fn build(&self, ctx: &Context) -> CaseResult<Built> {
        let values = seeded(&format!("{}/src", self.name()), 4 * self.n_vec4 as usize);
        let n_threads = self.n_workgroups as usize * STREAM_READ_WG_SIZE as usize;
        let mut sums = vec![0f64; self.n_workgroups as usize];
        for (i, v) in values.chunks_exact(4).enumerate() {
            sums[(i % n_threads) / STREAM_READ_WG_SIZE as usize] += v.iter().map(|&x| x as f64).sum::<f64>();
        }
        let reference = sums.iter().map(|&s| s as f32).collect();
        let src = upload_f32(ctx, "src", &values)?;
        let output = guarded_output(ctx, self.n_workgroups as usize, OutType::F32)?;
        let (out, n_vec4, n_workgroups) = (Rc::clone(&output), self.n_vec4, self.n_workgroups);
        Ok(Built {
            record: Box::new(move |batch| stream_read(batch, &src, n_vec4, &out, n_workgroups)),
            output,
            output_type: OutType::F32,
            reference,
        })
    }
}
