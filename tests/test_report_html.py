"""`archgen report`: one self-contained HTML page, checked as text and in headless Chromium
(no console errors, a page that is not blank, hover and sort working, hostile names inert)."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_diagram import PAYLOAD, hostile_network

import archgen
from archgen.cli import main
from archgen.html_report import render_report

ROOT = Path(__file__).resolve().parents[1]
SEED = str(ROOT / "examples" / "seed_cnn.cnn")
UNET = str(ROOT / "examples" / "unet_small.cnn")
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install "
                             "chromium; .ci/run installs it)")


def run(*args):
    return CliRunner().invoke(main, list(args))


def page(spec: str, **kwargs) -> str:
    arch = archgen.load(spec)
    return render_report(arch.network, source=arch.source, diagnostics=arch.check(), **kwargs)


def test_report_holds_totals_every_layer_and_warnings_with_their_lines(tmp_path):
    out = tmp_path / "report.html"
    result = run("report", SEED, "-o", str(out))
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "541,094" in html and "3,318,664" in html and "[3, 32, 32] &rarr; [10]" in html
    net = archgen.load(SEED).network
    rows = re.findall(r'<tr data-index="\d+" data-path="([^"]*)">', html)
    assert rows == [layer.path for layer in net.layers()]
    # W504 with its source line and caret, as the terminal shows it
    assert 'data-code="W504"' in html
    assert " 20 |     linear(500)" in html and "^^^^^^^^^^^" in html
    assert 'id="parity"' not in html
    assert html.count("<svg") == 1 and "<script>" in html


@pytest.mark.parametrize("spec", [SEED, UNET, str(ROOT / "examples" / "densenet121.cnn")])
def test_report_fetches_nothing(spec):
    html = page(spec)
    assert not re.search(r"""\b(src|href|xlink:href)\s*=|<link|@import|url\((?!#)|https?:""",
                         html.replace('xmlns="http://www.w3.org/2000/svg"', ""))


def test_report_header_lists_every_named_output():
    """`output p2, p3, p4, p5` (examples/fpn.cnn): the header names each output with its shape,
    and the diagram draws an output node for each."""
    html = page(str(ROOT / "examples" / "fpn.cnn"))
    outs = "p2 [64, 16, 16], p3 [64, 8, 8], p4 [64, 4, 4], p5 [64, 2, 2]"
    assert f"<b>[3, 64, 64] &rarr; {outs}</b>" in html
    for name in ("p3", "p4", "p5"):
        assert f'data-output="{name}"' in html


def test_hostile_names_are_escaped_in_the_page():
    n = hostile_network()
    html = render_report(n, source="", diagnostics=[])
    assert html.count("<script") == 1  # the page's own
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_parity_verdict_in_the_report(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "report.html"
    result = run("report", SEED, "-o", str(out), "--parity")
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert 'class="verdict ok">parity SeedCNN: ok: ' in html


@pytest.mark.parametrize("blocked", ["onnx", "onnxruntime"])
def test_parity_without_the_onnx_extra_is_a_message(blocked, tmp_path):
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None  # as if not installed\n"
        "from archgen.cli import main\n"
        f"main(['report', {SEED!r}, '-o', 'r.html', '--parity'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True,
                         text=True, cwd=tmp_path)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    assert "report --parity needs" in out.stderr and "pip install 'archgen[onnx]'" in out.stderr
    assert not (tmp_path / "r.html").exists()


# -- in a real browser -------------------------------------------------------------------------

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--enable-logging=stderr", "--v=0"]

# Installed before the page's own script: every error and console.error is recorded.
CATCH = """<script>
window.__errors = [];
window.alert = window.confirm = window.prompt = function () { window.__pwned = true; };
window.onerror = function (msg, src, line) { window.__errors.push(msg + " @" + line); };
window.addEventListener("error", function (e) { window.__errors.push("load: " + e.target); }, true);
(function () { var e = console.error; console.error = function () {
  window.__errors.push(Array.prototype.join.call(arguments, " ")); e.apply(console, arguments); };
})();
</script>"""

# Runs after the page's script: hovers a box, sorts a column, and writes what it saw.
PROBE = """<script>
(function () {
  var out = {errors: window.__errors, pwned: !!window.__pwned};
  var g = null, most = 0;  // the box standing for the most layers (a folded repeat)
  document.querySelectorAll("#diagram .node").forEach(function (node) {
    var n = JSON.parse(node.getAttribute("data-layers")).length;
    if (n > most) { most = n; g = node; }
  });
  g.dispatchEvent(new MouseEvent("mouseenter"));
  out.hoverPaths = JSON.parse(g.getAttribute("data-paths"));
  out.hoverLayers = JSON.parse(g.getAttribute("data-layers"));
  out.lit = Array.prototype.map.call(document.querySelectorAll("tr.hl"),
    function (tr) { return Number(tr.getAttribute("data-index")); });
  var info = document.getElementById("info");
  out.info = info.hidden ? null : info.textContent;
  g.dispatchEvent(new MouseEvent("mouseleave"));
  out.litAfter = document.querySelectorAll(".hl").length;
  var params = document.querySelectorAll("#layers th")[5];
  params.click(); params.click();  // descending
  out.sorted = Array.prototype.map.call(document.querySelectorAll("#layers tbody tr"),
    function (tr) { return Number(tr.cells[5].getAttribute("data-v")); });
  out.rows = document.querySelectorAll("#layers tbody tr").length;
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>"""


def chromium(tmp_path: Path, html_file: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args,
                           html_file.as_uri()], check=False, capture_output=True,
                          timeout=60, cwd=tmp_path, env={**os.environ, "HOME": str(tmp_path)})


def console_errors(log: str) -> list[str]:
    return [line for line in log.splitlines()
            if "Uncaught" in line or ("CONSOLE" in line and ":ERROR:" in line)]


def instrumented(html: str) -> str:
    html = html.replace("<head>", "<head>\n" + CATCH, 1)
    return html.replace("</body>", PROBE + "\n</body>", 1)


@needs_chromium
@pytest.mark.parametrize("which", ["unet_small", "densenet121", "hostile"])
def test_report_runs_in_chromium_hover_and_sort(tmp_path, which):
    """The page's script runs without an error; hovering a box lights its table rows (all 24
    copies of a folded DenseNet layer) and shows the first; a column sorts; hostile names run
    nothing (PAYLOAD sets no window.__pwned)."""
    if which != "hostile":
        spec = str(ROOT / "examples" / f"{which}.cnn")
        html = page(spec)
        net = archgen.load(spec).network
    else:
        net = hostile_network()
        for layer in net.layers():
            layer.name = "<img src=x onerror=\"window.__pwned=1\">" + PAYLOAD
        html = render_report(net, source="", diagnostics=[])
    html_file = tmp_path / "report.html"
    html_file.write_text(instrumented(html))
    done = chromium(tmp_path, html_file, "--virtual-time-budget=3000", "--dump-dom")
    dom = done.stdout.decode()
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.DOTALL)
    assert found, done.stderr.decode()[-2000:]
    probe = json.loads(found[1].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&"))
    assert probe["errors"] == [] and not probe["pwned"]
    assert console_errors(done.stderr.decode()) == []
    layers = list(net.layers())
    assert probe["rows"] == len(layers)
    assert probe["lit"] and probe["lit"] == probe["hoverLayers"]
    assert len(probe["lit"]) == {"unet_small": 1, "densenet121": 24, "hostile": 2}[which]
    assert [layers[i].path for i in probe["lit"]] == probe["hoverPaths"] or which == "hostile"
    assert probe["info"] and "params: " in probe["info"]
    assert probe["litAfter"] == 0
    assert probe["sorted"] == sorted((layer.params for layer in layers), reverse=True)


def png_pixels(data: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the rows of an 8-bit RGB or RGBA PNG (non-interlaced), unfiltered."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                line[i] = (line[i] + line[i - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for i in range(stride):
                left = line[i - bpp] if i >= bpp else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - bpp] if i >= bpp else 0
                b, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r[i:i + 3]) for r in rows for i in range(0, stride, bpp)]


@needs_chromium
def test_report_screenshot_is_not_blank(tmp_path):
    html_file = tmp_path / "report.html"
    html_file.write_text(page(SEED))
    shot = tmp_path / "shot.png"
    done = chromium(tmp_path, html_file, "--window-size=640,480", f"--screenshot={shot}")
    assert shot.exists(), done.stderr.decode()[-2000:]
    assert console_errors(done.stderr.decode()) == []
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (640, 480)
    counts = Counter(pixels)
    background = counts.most_common(1)[0][0]
    assert len(counts) > 200  # text, the family colours, the table
    assert sum(p != background for p in pixels) > 0.05 * len(pixels)
    # the family colours of the diagram (conv blue, activation red) are on screen
    assert any(p[2] > 200 and p[0] < 120 for p in pixels)
