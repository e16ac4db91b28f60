"""The visualiser: print_probs in its three looks, the heatmap PNG and the standalone HTML page."""

from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from gpt_keras.tools import viz
from gpt_keras.core.data import Vocabulary
from gpt_keras.tools.viz import VizError, attention_heatmap, export_html, format_probs, print_probs, probs_html

WORDS = ["", "[UNK]", "wine", "review", ":", "germany", "mosel", "rheinhessen", "rheingau", "franken", "baden", "<b>"]
RGBA = re.compile(r"rgba\(135,206,250,([0-9.]+)\)")


def probs(**named: float) -> np.ndarray:
    """A float32 distribution over WORDS (as the model outputs it) with the named words' probabilities."""
    distribution = np.zeros(len(WORDS), np.float32)
    for word, p in named.items():
        distribution[WORDS.index(word)] = p
    return distribution


# The lecture's step 2 after "wine review : germany :", with two heads that look at different words.
STEP = {
    "prompt": "wine review : germany :",
    "atts": np.array([[0.1, 0.1, 0.1, 0.6, 0.1], [0.3, 0.1, 0.1, 0.2, 0.3]], np.float32),
    "word_probs": probs(mosel=0.9243, rheinhessen=0.0603, rheingau=0.0075, franken=0.0045, baden=0.0021,
                        wine=0.0013),
    "token": 6,
    "word": "mosel",
}
MEAN_SHADE = [0.5, 0.25, 0.25, 1.0, 0.5]  # mean attention [.2 .1 .1 .4 .2] over its maximum .4
HEAD_SHADES = [[1 / 6, 1 / 6, 1 / 6, 1.0, 1 / 6], [1.0, 1 / 3, 1 / 3, 2 / 3, 1.0]]
LECTURE_TOP = ["mosel: 92.43%", "rheinhessen: 6.03%", "rheingau: 0.75%", "franken: 0.45%", "baden: 0.21%"]


def test_html_alpha_is_head_averaged_attention_over_its_maximum():
    html = probs_html([STEP], WORDS)
    alphas = [float(a) for a in RGBA.findall(html)]
    assert alphas == pytest.approx(MEAN_SHADE, abs=5e-4)
    spans = re.findall(r'<span style="background-color:rgba\(135,206,250,[0-9.]+\);">([^<]*)</span>', html)
    assert spans == ["wine", "review", ":", "germany", ":"]


def test_top_k_in_order_with_the_lecture_percentages():
    text = format_probs([STEP], WORDS, mode="plain")
    lines = text.splitlines()
    assert lines[1:6] == LECTURE_TOP
    assert lines[6] == "-----"
    assert format_probs([STEP], WORDS, n_words=2, mode="plain").splitlines()[1:3] == LECTURE_TOP[:2]
    html = probs_html([STEP], WORDS)
    assert html.index("rheinhessen: 6.03%") < html.index("rheingau: 0.75%") < html.index("baden: 0.21%")
    assert "<b>mosel: 92.43%</b>" in html  # the sampled word is bold


def test_percentages_are_printed_cleanly():
    assert viz.percent(np.float32(0.9243)) == "92.43%"
    assert viz.percent(np.float32(0.0021)) == "0.21%"
    assert viz.percent(0.111) == "11.10%"
    assert viz.percent(1.0) == "100.00%"
    assert viz.percent(0.0) == "0.00%"
    from gpt_keras.tools.lecture import _format  # the notebook's table of this run beside the class
    assert _format("mosel_step_2", 11.1) == "11.10%"


def test_plain_has_no_escape_codes_and_ansi_has_shading_and_bars():
    plain = format_probs([STEP], WORDS, mode="plain")
    assert "\x1b" not in plain
    assert plain.splitlines()[0] == "wine[0.50] review[0.25] :[0.25] germany[1.00] :[0.50]"
    ansi = format_probs([STEP], WORDS, mode="ansi")
    assert "\x1b[" in ansi
    assert "\x1b[38;2;0;0;0;48;2;135;206;250mgermany\x1b[0m" in ansi  # the most attended word, fully shaded
    top = [line for line in ansi.splitlines() if "%" in line]
    assert len(top) == 5 and "█" in top[0] and "92.43%" in top[0]
    starts = {re.sub(r"\x1b\[[0-9;]*m", "", line).index("%") for line in top}
    assert len(starts) == 1  # percentages aligned in one column


def test_padding_and_unknown_ids_are_named():
    step = dict(STEP, word_probs=np.array([0.7, 0.1] + [0.0] * (len(WORDS) - 2) + [0.2]), word="")
    text = format_probs([step], WORDS, n_words=3, mode="plain")
    assert text.splitlines()[1:4] == ["<pad>: 70.00%", "<id 12>: 20.00%", "[UNK]: 10.00%"]


def test_attention_shorter_than_the_prompt_is_aligned_from_the_end():
    step = dict(STEP, atts=np.array([[0.2, 0.6, 0.2], [0.2, 0.6, 0.2]]))  # a window over the last 3 words
    plain = format_probs([step], WORDS, mode="plain")
    assert plain.splitlines()[0] == "wine[-] review[-] :[0.33] germany[1.00] :[0.33]"
    html = probs_html([step], WORDS)
    assert [float(a) for a in RGBA.findall(html)] == pytest.approx([1 / 3, 1.0, 1 / 3], abs=5e-4)
    assert re.findall(r'title="outside the context window">([^<]*)<', html) == ["wine", "review"]
    with pytest.raises(VizError, match="6 attention weights but the prompt has only 5 words"):
        format_probs([dict(STEP, atts=np.ones((2, 6)) / 6)], WORDS)


def test_per_head_shading():
    plain = format_probs([STEP], WORDS, mode="plain", heads=True).splitlines()
    assert plain[0] == "mean:   wine[0.50] review[0.25] :[0.25] germany[1.00] :[0.50]"
    assert plain[1] == "head 1: wine[0.17] review[0.17] :[0.17] germany[1.00] :[0.17]"
    assert plain[2] == "head 2: wine[1.00] review[0.33] :[0.33] germany[0.67] :[1.00]"
    html = probs_html([STEP], WORDS, heads=True)
    alphas = [float(a) for a in RGBA.findall(html)]
    assert alphas == pytest.approx(MEAN_SHADE + HEAD_SHADES[0] + HEAD_SHADES[1], abs=5e-4)
    assert "head 1:" in html and "head 2:" in html
    assert "head" not in format_probs([STEP], WORDS, mode="plain")


def test_vocabulary_kinds_give_the_same_output():
    expected = format_probs([STEP], WORDS, mode="plain")
    assert format_probs([STEP], Vocabulary(tuple(WORDS)), mode="plain") == expected
    assert format_probs([STEP], dict(enumerate(WORDS)), mode="plain") == expected
    assert format_probs(STEP, WORDS, mode="plain") == expected  # one step


def test_words_are_escaped_in_html():
    step = dict(STEP, prompt="wine review : <b> :", word_probs=probs(**{"<b>": 0.9, "mosel": 0.1}), word="<b>")
    html = probs_html([step], WORDS)
    assert "&lt;b&gt;" in html
    assert "<b>&lt;b&gt;: 90.00%</b>" in html
    assert "<b> :" not in html and "<b>:" not in html


def test_print_probs_prints_what_it_returns(capsys):
    stream = io.StringIO()
    shown = print_probs([STEP, STEP], WORDS, mode="plain", file=stream)
    assert stream.getvalue() == shown == format_probs([STEP, STEP], WORDS, mode="plain")
    assert shown.count("-----") == 2
    assert isinstance(shown, str) and "characters" in repr(shown)
    shown = print_probs([STEP], WORDS, mode="html")
    assert capsys.readouterr().out.strip() == shown.strip() and "rgba(135,206,250," in shown


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_auto_mode(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert viz.resolve_mode("auto", io.StringIO()) == "plain"
    terminal = FakeTerminal()
    print_probs([STEP], WORDS, file=terminal)
    assert "\x1b[" in terminal.getvalue()
    monkeypatch.setenv("NO_COLOR", "1")
    assert viz.resolve_mode("auto", FakeTerminal()) == "plain"
    with pytest.raises(VizError, match="mode must be one of"):
        format_probs([STEP], WORDS, mode="colour")


def test_auto_mode_in_a_notebook_displays_html(monkeypatch):
    display = pytest.importorskip("IPython.display")
    shown = []
    monkeypatch.setattr(viz.text, "in_notebook", lambda: True)  # where print_probs looks it up
    monkeypatch.setattr(display, "display", lambda obj, raw=False: shown.append((obj, raw)))
    result = print_probs([STEP], WORDS, heads=True)
    (bundle, raw), = shown
    assert raw and bundle["text/html"] == result and "rgba(135,206,250,1.000)" in result
    assert bundle["text/plain"].startswith("mean:   wine[0.50]")
    assert result._ipython_display_() is None  # the notebook does not show the returned string again


def test_bad_steps_name_the_problem():
    with pytest.raises(VizError, match="step 2: the step has no 'atts'"):
        format_probs([STEP, {"prompt": "wine", "word_probs": [1.0]}], WORDS)
    with pytest.raises(VizError, match="n_words must be an integer"):
        format_probs([STEP], WORDS, n_words=0)
    with pytest.raises(VizError, match="list of steps"):
        format_probs("wine review", WORDS)
    assert format_probs([], WORDS) == ""


def _is_png(path) -> bool:
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_attention_heatmap_writes_a_valid_png(tmp_path):
    from matplotlib.image import imread

    second = dict(STEP, prompt=STEP["prompt"] + " mosel", atts=np.full((2, 6), 1 / 6), word=":")
    for name, kwargs in [("all.png", {}), ("mean.png", {"heads": False}), ("step.png", {"step": -1}),
                         ("deep/step0.png", {"step": 0, "heads": False})]:
        path = attention_heatmap([STEP, second], tmp_path / name, **kwargs)
        assert path == tmp_path / name and _is_png(path)
        height, width, _ = imread(path).shape
        assert height > 100 and width > 100
    written = sorted(p.name for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["all.png", "mean.png", "step.png", "step0.png"]  # no temporary files left
    with pytest.raises(VizError, match="step must be an index"):
        attention_heatmap([STEP], tmp_path / "x.png", step=3)
    with pytest.raises(VizError, match="no steps"):
        attention_heatmap([], tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def _long_generation(n_steps: int = 76, n_heads: int = 2) -> list[dict]:
    """A generation as long as `generate`'s default: the prompt grows a word per step, attention over all of it."""
    rng = np.random.default_rng(0)
    words = ["wine", "review", ":", "germany", ":"] + [WORDS[2 + i % 9] for i in range(n_steps)]
    steps = []
    for step in range(n_steps):
        seen = 5 + step
        attention = rng.random((n_heads, seen)).astype(np.float32)
        steps.append({"prompt": " ".join(words[:seen]), "atts": attention / attention.sum(-1, keepdims=True),
                      "word_probs": probs(mosel=0.9, baden=0.1), "word": words[seen]})
    return steps


@pytest.mark.parametrize("step", [None, -1])
def test_the_heatmap_is_a_landscape_slide_with_12_pt_labels_that_do_not_overlap(tmp_path, step):
    from matplotlib.image import imread

    from gpt_keras.tools.viz.pictures import heatmap_figure

    info = _long_generation()
    height, width, _ = imread(attention_heatmap(info, tmp_path / "slide.png", step=step)).shape
    assert (width, height) == (1920, 1080)  # 16:9, as a projector shows it
    figure = heatmap_figure(info, step=step)
    points_at_1920 = 1920 / (figure.get_figwidth() * figure.dpi)  # 1.0: the PNG is 1920 px wide
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # lays the labels out as the PNG has them
    renderer = canvas.get_renderer()
    for ax in figure.axes[:-1]:  # the last axes is the colorbar
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            shown = [label for label in labels if label.get_visible() and label.get_text()]
            assert all(label.get_fontsize() * points_at_1920 >= 12 for label in shown)
            boxes = [label.get_window_extent(renderer) for label in shown]
            assert not [(a, b) for a, b in zip(boxes, boxes[1:]) if a.overlaps(b)]
    if step is None:  # every step is there, and a label at least every third one
        assert figure.axes[0].get_images()[0].get_array().shape == (76, 80)
        assert len(figure.axes[0].get_yticklabels()) >= 76 // 3


class TagChecker(HTMLParser):
    """Collects tags and fails on any end tag that does not close the innermost open element."""

    VOID = {"meta", "br", "img", "link", "hr", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()


def test_export_html_is_a_standalone_escaped_page(tmp_path):
    step = dict(STEP, prompt="wine review : <b> & co :", atts=np.full((2, 4), 0.25),
                  word_probs=probs(**{"<b>": 0.6, "mosel": 0.4}), word="<b>")
    path = export_html([STEP, step], WORDS, tmp_path / "page.html", title="Reseñas <script>", n_words=3)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    checker = TagChecker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert checker.tags.count("section") == 2 and "script" not in checker.tags and "b" not in checker.tags
    assert "<title>Reseñas &lt;script&gt;</title>" in page
    assert "&lt;b&gt;</span>" in page and "&amp;</span>" in page
    assert "src=" not in page and "href=" not in page  # nothing to fetch
    assert page.count("rgba(135,206,250,") == 1 + 3 * 5 + 3 * 4  # the legend, then mean and 2 heads per step
    assert "wine review : &lt;b&gt; &amp; co : &lt;b&gt;" in page  # the whole generated text
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_records_from_a_real_model_with_a_sliding_window():
    pytest.importorskip("keras")
    from gpt_keras.core.callbacks import TextGenerator
    from gpt_keras.core.model import build_gpt
    from tests.conftest import tiny_config

    vocab = ["", "[UNK]", "wine", "review", ":", "germany", "mosel"]
    model = build_gpt(tiny_config(vocab_size=len(vocab), max_len=6))
    for seed in range(50):  # an untrained model may sample padding and stop; find a text that outgrows the window
        text_generator = TextGenerator(vocab, seed=seed, print_fn=None)
        text_generator.set_model(model)
        info = text_generator.generate("wine review : germany : mosel", max_tokens=12, temperature=5.0)
        if len(info) >= 3:
            break
    assert len(info) >= 3
    widths = [np.shape(step["atts"]) for step in info]
    assert widths == [(2, min(len(step["prompt"].split()), 6)) for step in info]
    assert len(info[-1]["prompt"].split()) > 6  # the window slid: attention covers only the last 6 words
    text = format_probs(info, vocab, mode="plain", heads=True)
    assert text.count("-----") == len(info) and text.count("head 2:") == len(info)
    mean_lines = [line for line in text.splitlines() if line.startswith("mean:")]
    assert "[-]" not in mean_lines[0] and "[-]" in mean_lines[-1]
    assert probs_html(info, vocab).count("rgba(135,206,250,") == sum(width for _, width in widths)


@pytest.mark.slow
def test_cli_generate_shows_probs_and_writes_the_views(trained_run, tmp_path):
    from tests.conftest import cli

    result = cli("generate", "--run", trained_run.run_dir, "--prompt", "wine review : us", "--seed", "0",
                 "--max-tokens", "8", "--samples", "2", "--heads", "--html", tmp_path / "gen.html",
                 "--heatmap", tmp_path / "gen.png")
    out = result.out
    assert result.code == 0, result.err
    assert out.count("generated text:") == 2 and "head 2:" in out and "-----" in out
    assert "\x1b" not in out  # captured output is not a terminal: plain text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gen-2.html", "gen-2.png", "gen.html", "gen.png"]
    assert _is_png(tmp_path / "gen.png")
    assert (tmp_path / "gen.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_the_exported_pages_head_labels_sit_on_the_line_of_their_words(tmp_path):
    """"mean", "head 1", "head 2" share the baseline of the shaded words beside them (in Chromium at 1024x768)."""
    from tests.test_lab import browser_executable

    executable = browser_executable()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium; .ci/install-browser does it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (the [dev] extra)")
    page_path = export_html([STEP], WORDS, tmp_path / "page.html")
    baselines = """() => [...document.querySelectorAll('section table:first-of-type tr')].map(row =>
        [...row.cells].map(cell => {  // a zero-size inline box sits on the baseline of the cell's first line
            const mark = document.createElement('span');
            mark.style.cssText = 'display:inline-block;width:0;height:0;vertical-align:baseline';
            cell.prepend(mark);
            return mark.getBoundingClientRect().top; }))"""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.goto(page_path.resolve().as_uri())
        rows = page.evaluate(baselines)
        browser.close()
    assert len(rows) == 3  # mean, head 1, head 2
    for label, words in rows:
        assert abs(label - words) <= 1, rows
