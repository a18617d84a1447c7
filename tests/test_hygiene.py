import copy

from omni_edu.tools import hygiene
from omni_edu.tools.notebook_io import (
    build_notebook,
    dumps_notebook,
    iter_notebooks,
    read_notebook,
    write_notebook,
)

OUTPUT = [{"output_type": "stream", "name": "stdout", "text": ["hi\n"]}]


def dirty_notebook():
    nb = build_notebook([("code", "print('hi')"), ("code", "# NBVAL_CHECK_OUTPUT\nprint('hi')")])
    for cell in nb["cells"][1:]:
        cell["outputs"] = copy.deepcopy(OUTPUT)
        cell["execution_count"] = 3
    return nb


def test_strip_keeps_only_checked_outputs(tmp_path):
    path = tmp_path / "nb.ipynb"
    write_notebook(dirty_notebook(), path)
    found = hygiene.problems(path)
    assert any("cell 1 has stored outputs" in p for p in found)
    assert not any("cell 2 has stored outputs" in p for p in found)
    assert hygiene.main(["--check", str(tmp_path)]) == 1
    assert hygiene.main([str(tmp_path)]) == 0
    assert hygiene.problems(path) == []
    cells = read_notebook(path)["cells"]
    assert cells[1]["outputs"] == [] and cells[1]["execution_count"] is None
    assert cells[2]["outputs"] == OUTPUT  # nbval compares this one


def test_stripping_is_idempotent(tmp_path):
    path = tmp_path / "nb.ipynb"
    write_notebook(dirty_notebook(), path)
    hygiene.main([str(path)])
    once = path.read_text()
    hygiene.main([str(path)])
    assert path.read_text() == once == dumps_notebook(read_notebook(path))


def test_committed_notebooks_are_clean():
    dirty = {
        str(p): hygiene.problems(p)
        for p in iter_notebooks(hygiene.DEFAULT_FOLDERS)
        if hygiene.problems(p)
    }
    assert not dirty, f"run `python -m omni_edu.tools.hygiene`: {dirty}"


def test_hygiene_rewrites_an_old_set_up_cell_to_the_current_one(tmp_path):
    from omni_edu.tools.colab import SETUP_MARKER, setup_cell_source

    nb = build_notebook([("code", "print('hi')")])
    nb["cells"][0]["source"] = [f"{SETUP_MARKER}: an older version\n", "import sys\n"]
    path = tmp_path / "nb.ipynb"
    write_notebook(nb, path)
    assert hygiene.problems(path)  # out of date counts as dirty
    hygiene.main([str(tmp_path)])
    first = read_notebook(path)["cells"][0]
    assert "".join(first["source"]) == setup_cell_source()
    assert hygiene.problems(path) == []
