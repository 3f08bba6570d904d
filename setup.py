"""Ship the top-level grammar/ and stdlib/ inside the wheel, with the grammar's parse tables.

The grammar and the standard library live at the top of the repository (one grammar file,
one stdlib folder); at build time they are copied into the package as ppl/_grammar and
ppl/_stdlib so that an installed copy finds them without a checkout. The LALR tables are
built here too and stored beside the grammar as JSON (ppl/_grammar/ppl.tables.json): an
installed ppl loads them in milliseconds and never builds or caches them at run time
(ppl/syntax/tables.py says why no cache in a shared directory).
"""
import importlib.util
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).parent


class BuildWithResources(build_py):
    def run(self):
        super().run()
        for src, dst in (("grammar", "_grammar"), ("stdlib", "_stdlib")):
            target = Path(self.build_lib) / "ppl" / dst
            target.mkdir(parents=True, exist_ok=True)
            for f in (ROOT / src).iterdir():
                if f.suffix in (".lark", ".ppl"):
                    shutil.copy2(f, target / f.name)
        tables = _load_tables_module()
        grammar = Path(self.build_lib) / "ppl" / "_grammar" / "ppl.lark"
        tables.write_tables(grammar.read_text(encoding="utf-8"),
                            grammar.with_name(tables.TABLES_NAME))


def _load_tables_module():
    # by path: importing the ppl package would import its dependencies, which a build need not have
    spec = importlib.util.spec_from_file_location("_ppl_tables", ROOT / "ppl" / "syntax" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


setup(cmdclass={"build_py": BuildWithResources})
