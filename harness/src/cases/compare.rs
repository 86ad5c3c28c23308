//! Verdicts: guards first, then NaN/Inf parity, then the error metric.

use super::{GUARD_ELEMS, GUARD_VALUE};

#[derive(Debug, Clone)]
pub struct Verdict {
    pub passed: bool,
    pub nmse: Option<f64>,
    pub max_abs: Option<f64>,
    pub detail: String,
}

impl Verdict {
    fn fail(detail: String) -> Verdict {
        Verdict { passed: false, nmse: None, max_abs: None, detail }
    }
}

/// `got` holds the output followed by its guard values.
pub fn judge(got: &[f32], want: &[f32], max_nmse: f64) -> Verdict {
    let n = want.len();
    if got.len() < n + GUARD_ELEMS {
        return Verdict::fail(format!("read back {} values, expected {} + {GUARD_ELEMS} guards", got.len(), n));
    }
    if let Some(i) = got[n..n + GUARD_ELEMS].iter().position(|&v| v != GUARD_VALUE) {
        return Verdict::fail(format!("wrote past the end of the output (guard {i} is {})", got[n + i]));
    }
    for (i, (&g, &w)) in got[..n].iter().zip(want).enumerate() {
        if g.is_nan() != w.is_nan()
            || g.is_infinite() != w.is_infinite()
            || (g.is_infinite() && g.signum() != w.signum())
        {
            return Verdict::fail(format!("NaN/Inf mismatch at {i}: got {g}, want {w}"));
        }
    }
    let (mut err, mut norm, mut max_abs) = (0.0f64, 0.0f64, 0.0f64);
    for (&g, &w) in got[..n].iter().zip(want).filter(|(g, _)| g.is_finite()) {
        let d = g as f64 - w as f64;
        err += d * d;
        norm += (w as f64) * (w as f64);
        max_abs = max_abs.max(d.abs());
    }
    let nmse = if norm > 0.0 { err / norm } else { err };
    let passed = nmse <= max_nmse;
    let detail = if passed {
        format!("nmse={nmse:.2e} max_abs={max_abs:.2e}")
    } else {
        format!("nmse={nmse:.3e} > {max_nmse:.0e} (max_abs={max_abs:.3e})")
    };
    Verdict { passed, nmse: Some(nmse), max_abs: Some(max_abs), detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_guards(v: &[f32]) -> Vec<f32> {
        let mut out = v.to_vec();
        out.extend([GUARD_VALUE; GUARD_ELEMS]);
        out
    }

    #[test]
    fn catches_each_kind_of_failure() {
        let want = [1.0, 2.0, 3.0];
        assert!(judge(&with_guards(&want), &want, 1e-12).passed);
        assert!(!judge(&with_guards(&[1.0, 2.0, 3.1]), &want, 1e-6).passed);
        assert!(judge(&with_guards(&[1.0, f32::NAN, 3.0]), &want, 1.0).detail.contains("NaN"));
        let mut overrun = with_guards(&want);
        overrun[3] = 0.0;
        assert!(judge(&overrun, &want, 1.0).detail.contains("past the end"));
        assert!(!judge(&want, &want, 1.0).passed, "missing guards");
    }
}
