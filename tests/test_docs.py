"""The documentation: the API reference is generated and complete, links
resolve, the quick start runs, and the tutorial scripts run and draw."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
REFERENCE = DOCS / "api_reference.md"


def _generator():
    spec = importlib.util.spec_from_file_location("gen_api_reference", ROOT / "tools" / "gen_api_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- the API reference -------------------------------------------------------------------------------------
def test_api_reference_is_up_to_date():
    text = _generator().generate()
    current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    assert current == text, (
        "docs/api_reference.md is out of date with the code's public names and docstrings: "
        "run `python tools/gen_api_reference.py` and commit the result"
    )


def test_api_reference_names_every_public_name():
    gen = _generator()
    text = REFERENCE.read_text(encoding="utf-8")
    modules = gen.documented_modules()
    names = {m.__name__ for m in modules}
    # the modules whose __all__ is the public API must all be there
    for required in ("numlstm", "numlstm.losses", "numlstm.optim", "numlstm.callbacks", "numlstm.plots", "numlstm.interop"):
        assert required in names
    missing = []
    for module in modules:
        listed = list(getattr(module, "__all__", [])) + gen.public_names(module)
        for name in listed:
            if f"`{module.__name__}.{name}`" not in text:
                missing.append(f"{module.__name__}.{name}")
        if f"## Module `{module.__name__}`" not in text:
            missing.append(module.__name__)
    assert not missing, f"not in docs/api_reference.md: {missing}; run `python tools/gen_api_reference.py`"


def test_api_reference_documents_class_methods():
    text = REFERENCE.read_text(encoding="utf-8")
    for member in ("numlstm.LSTM.forward", "numlstm.LSTM.backward", "numlstm.Trainer.fit", "numlstm.optim.Optimizer.step"):
        assert f"`{member}`" in text, member


def test_generator_formats_numpy_docstrings():
    gen = _generator()

    def f(x, dtype=float, *, seed: int | None = None) -> int:
        """Do a thing with ``x``.

        Parameters
        ----------
        x : ndarray (B, T)
            The input; see :func:`numlstm.load`.

        Examples
        --------
        >>> f(1)
        1
        """

    lines = gen.format_doc(f.__doc__)
    assert lines[0] == "Do a thing with `x`."
    assert "**Parameters**" in lines and "- `x` : ndarray (B, T) — The input; see `numlstm.load`." in lines
    assert "```pycon" in lines and ">>> f(1)" in lines
    assert gen.format_signature("f", f) == "f(x, dtype=float, *, seed: int | None = None) -> int"
    assert gen.slug("numlstm.LSTM.forward") == "numlstmlstmforward"
    module = types.ModuleType("fake")
    module.__all__ = ["b", "A"]
    assert gen.public_names(module) == ["A", "b"]


# -- links ---------------------------------------------------------------------------------------------------
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(path: Path) -> list[str]:
    """Link targets of a Markdown file that are files in this repository (no URLs, no pure anchors)."""
    text = _INLINE_CODE.sub("", _FENCE.sub("", path.read_text(encoding="utf-8")))
    out = []
    for target in _LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return out


def test_relative_links_point_to_files():
    files = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
    broken = []
    for md in files:
        for target in relative_links(md):
            if not (md.parent / target).exists():
                broken.append(f"{md.relative_to(ROOT)} -> {target}")
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_link_finder_skips_code_and_urls(tmp_path):
    md = tmp_path / "x.md"
    md.write_text(
        "[a](a.md) ![i](img/p.png) [u](https://x.org/y.md) [s](#sec) `[c](code.md)`\n"
        "```python\nmodel.layers[0](x)\n```\n[b](b.md#part)\n",
        encoding="utf-8",
    )
    assert relative_links(md) == ["a.md", "img/p.png", "b.md"]


def test_mkdocs_nav_lists_existing_pages():
    nav = re.findall(r":\s*([\w/.-]+\.md)\s*$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    assert "index.md" in nav and "api_reference.md" in nav
    present = [p for p in nav if (DOCS / p).exists()]
    # pages other helpers write may land later; the ones here must all be reachable
    assert {"index.md", "install.md", "quickstart.md", "api_reference.md", "lstm_math.md"} <= set(present)
    for md in DOCS.glob("*.md"):
        assert md.name in nav, f"docs/{md.name} is not in mkdocs.yml's nav"


# -- the quick start runs --------------------------------------------------------------------------------------
def python_blocks(path: Path) -> str:
    return "\n".join(re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), re.S | re.M))


def _run(args, timeout, cwd):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def test_quickstart_code_runs(tmp_path):
    code = python_blocks(DOCS / "quickstart.md")
    assert "numlstm" in code
    script = tmp_path / "quickstart.py"
    script.write_text(code, encoding="utf-8")
    out = _run([sys.executable, str(script)], timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "restored accuracy:" in out.stdout


# -- the tutorial scripts run (reduced) and write their figure ------------------------------------------------------
TUTORIALS = ["tutorial_cnn_lstm.py", "tutorial_attention_maps.py", "tutorial_frame_prediction.py"]


@pytest.mark.parametrize("script", TUTORIALS)
def test_tutorial_script_quick_run_writes_png(script, tmp_path):
    path = ROOT / "examples" / script
    if not path.exists():
        pytest.skip(f"examples/{script} is not written yet")
    png = tmp_path / "figure.png"
    out = _run([sys.executable, str(path), "--quick", "--out", str(png)], timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert png.exists() and png.stat().st_size > 1000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "wrote figure.png" in out.stdout


@pytest.mark.parametrize("script", TUTORIALS)
def test_tutorial_page_shows_its_script(script):
    page = DOCS / script.replace(".py", ".md")
    if not page.exists():
        pytest.skip(f"docs/{page.name} is not written yet")
    text = page.read_text(encoding="utf-8")
    assert f"examples/{script}" in text
    images = re.findall(r"!\[[^\]]*\]\((img/[^)]+\.png)\)", text)
    assert images, f"docs/{page.name} shows no figure"
    for img in images:
        f = DOCS / img
        assert f.exists() and 0 < f.stat().st_size < 200_000, f"{img}: missing or over 200 KB"
