//! `DIR/checkpoint-N/`: what resuming needs to continue a run exactly — the adapter and AdamW's two moments (each as
//! a PEFT adapter directory: `adapter/`, `first_moment/`, `second_moment/`, f32 bit for bit), and `state.json` with
//! the step, the data position (the order of an epoch is a function of the seed and the epoch), the settings and
//! the loss history. It is written beside its final name and renamed into place, so it exists whole or not at all.

use super::RunSettings;
use super::outputs::LossRow;
use crate::args::io_error;
use ferrogem::atomic_file::{sync_dir, write_atomic};
use ferrogem::lora::write_peft_dir;
use ferrogem::models::gemma::{Gemma, LoraTrainer, TrainerState};
use ferrogem::training::data::DataPosition;
use std::path::{Path, PathBuf};

pub struct Checkpoint {
    pub settings: RunSettings,
    pub state: TrainerState,
    pub position: DataPosition,
    pub history: Vec<LossRow>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StateFile {
    steps: u32,
    position: DataPosition,
    settings: RunSettings,
    history: Vec<LossRow>,
}

const PARTS: [&str; 3] = ["adapter", "first_moment", "second_moment"];

impl Checkpoint {
    pub fn read(
        trainer: &LoraTrainer,
        gemma: &Gemma,
        settings: &RunSettings,
        position: DataPosition,
        history: &[LossRow],
    ) -> ferrogem::Result<Checkpoint> {
        Ok(Checkpoint {
            settings: settings.clone(),
            state: trainer.read_state_blocking(gemma)?,
            position,
            history: history.to_vec(),
        })
    }
}

/// Writes `out/checkpoint-<steps>/` (replacing one of that name) and returns its path.
pub fn save(out: &Path, c: &Checkpoint) -> ferrogem::Result<PathBuf> {
    let dir = out.join(format!("checkpoint-{}", c.state.steps));
    let staging = out.join(format!(".checkpoint-{}.partial", c.state.steps));
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| io_error("remove", &staging, e))?;
    }
    for (part, adapter) in PARTS.iter().zip([&c.state.adapter, &c.state.first_moment, &c.state.second_moment]) {
        let path = staging.join(part);
        std::fs::create_dir_all(&path).map_err(|e| io_error("create", &path, e))?;
        write_peft_dir(adapter, &path, None)?;
    }
    let state = StateFile {
        steps: c.state.steps,
        position: c.position,
        settings: c.settings.clone(),
        history: c.history.clone(),
    };
    let path = staging.join("state.json");
    let text = serde_json::to_string_pretty(&state).map_err(|e| io_error("serialize", &path, e))?;
    // Synced like the adapter files, so that a crash after the rename cannot leave an empty state.json.
    write_atomic(&path, text.as_bytes())?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io_error("replace", &dir, e))?;
    }
    std::fs::rename(&staging, &dir).map_err(|e| io_error("rename into place", &dir, e))?;
    sync_dir(out)?;
    Ok(dir)
}

pub fn load(dir: &Path) -> ferrogem::Result<Checkpoint> {
    let path = dir.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|e| io_error("read", &path, e))?;
    let state: StateFile = serde_json::from_str(&text).map_err(|e| io_error("parse", &path, e))?;
    let [adapter, first_moment, second_moment] = PARTS.map(|part| ferrogem::lora::open(&dir.join(part)));
    Ok(Checkpoint {
        settings: state.settings,
        state: TrainerState {
            adapter: adapter?,
            first_moment: first_moment?,
            second_moment: second_moment?,
            steps: state.steps,
        },
        position: state.position,
        history: state.history,
    })
}
