"""Import time, the README's example, stubs and docstrings."""

import inspect
import pathlib
import re
import subprocess
import sys

import repscope
import repscope.id

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_import_takes_under_half_a_second():
    code = "import time; t = time.perf_counter(); import repscope; print(time.perf_counter() - t)"
    times = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip()))
    print(f"import repscope: best {min(times):.3f} s of {times}")
    assert min(times) < 0.5, times


def readme_python_snippet():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Python\b(.*?)(?=^## )", text, re.S | re.M)
    assert section, "README.md has no '## Python' section"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    assert blocks, "the README's Python section has no ```python block"
    return blocks[0]


def test_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    code = readme_python_snippet()
    lines = [line for line in code.strip().splitlines() if line.strip()]
    assert len(lines) == 5, f"the README promises a five-line example, it has {len(lines)}"
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.strip(), "the example prints its results"


def test_every_public_name_is_documented_and_typed():
    pkg = pathlib.Path(repscope.__file__).parent
    assert (pkg / "py.typed").exists()
    stub = (pkg / "__init__.pyi").read_text()
    id_stub = (pkg / "id.pyi").read_text()
    for name in repscope.__all__:
        if name in ("id", "__version__"):
            continue
        obj = getattr(repscope, name)
        assert inspect.getdoc(obj), name
        assert f"def {name}(" in stub, name
    for name in repscope.id.__all__:
        cls = getattr(repscope.id, name)
        assert inspect.getdoc(cls) and inspect.getdoc(cls.fit), name
        assert f"class {name}(" in id_stub, name
