"""The documentation site stays whole: every setting is documented, the generated reference
pages are fresh, every page is in the navigation, and the README (the front door) stays short
and links only to what exists. `make docs` builds the site strictly (in CI)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from skyra_stream.runtime.reference_docs import configuration_page, reference_pages
from skyra_stream.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_MAX_LINES = 200


def test_every_setting_has_a_description() -> None:
    missing = [f"SKYRA_{n.upper()}" for n, f in Settings.model_fields.items() if not f.description]
    assert missing == [], "document these settings (Field(description=...))"


def test_every_setting_is_on_the_configuration_page() -> None:
    page = configuration_page()
    for name in Settings.model_fields:
        assert f"`SKYRA_{name.upper()}`" in page, name


def test_a_setting_without_a_description_would_be_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    field = Settings.model_fields["seed"]
    monkeypatch.setattr(field, "description", None)
    with pytest.raises(AssertionError):
        test_every_setting_has_a_description()


def test_the_generated_reference_pages_are_fresh() -> None:
    pages = reference_pages()
    stale = [p for p, text in pages.items() if not p.is_file() or p.read_text("utf-8") != text]
    assert stale == [], "run `skyra-stream docs`"
    assert set(pages) <= set(DOCS.rglob("*.md"))


def _nav_pages(nav: list) -> list[str]:
    found: list[str] = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        found += _nav_pages(value) if isinstance(value, list) else [value]
    return found


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = set(_nav_pages(config["nav"]))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages - nav == set(), "pages nobody can reach from the site's navigation"
    assert nav - pages == set(), "navigation entries without a page"


def test_the_readme_is_a_short_front_door_whose_links_resolve() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local, "the README links into the site"
    for link in local:
        assert (ROOT / link).exists(), link
