"""The explorer (zfcore.widgets, zfcore.plotting.explorer) without a browser: drawing, state,
panels against independent computations, and the widget callbacks driven from Python."""

import datetime
import io

import numpy as np
import pytest
import torch
from PIL import Image

from zfcore.data import get_dataset, normalize
from zfcore.deconv import project, requests
from zfcore.models import LayerError, get_layer, zfnet
from zfcore.plotting import explorer as draw
from zfcore.profiles import get_profile
from zfcore.receptive import receptive_field
from zfcore.widgets import Explorer, ExplorerError, ExplorerSession, scripted_tour

# ---------------------------------------------------------------------------------------------
# Drawing (zfcore.plotting.explorer), against hand-worked examples and naive loops
# ---------------------------------------------------------------------------------------------


def test_grid_geometry_pages_and_clicks():
    g = draw.grid_geometry(n_maps=20, page=1, page_size=8, cols=4, cell=10)
    assert (g.first, g.count, g.cols, g.rows, g.width, g.height) == (8, 8, 4, 2, 40, 20)
    assert g.cell_at(0, 0) == 8 and g.cell_at(39, 0) == 11 and g.cell_at(5, 15) == 12
    assert g.cell_at(40, 0) is None and g.cell_at(-1, 3) is None
    last = draw.grid_geometry(20, 2, 8, 4, 10)
    assert (last.first, last.count, last.rows) == (16, 4, 1)
    assert draw.grid_geometry(3, 0, 8, 4, 10).cell_at(35, 5) is None  # empty 4th cell
    with pytest.raises(draw.DrawError, match="page 3 does not exist: 20 maps make 3 page"):
        draw.grid_geometry(20, 3, 8, 4, 10)


def test_colorize_matches_matplotlib():
    import matplotlib

    lut = matplotlib.colormaps["viridis"]
    v = torch.tensor([[0.0, 1.0], [2.0, 4.0]])
    out = draw.colorize(v, vmax=4.0)
    for (i, j), x in np.ndenumerate(v.numpy()):
        want = (np.array(lut(int(x / 4.0 * 255))[:3]) * 255).astype(np.uint8)
        assert np.array_equal(out[i, j], want)
    assert np.array_equal(draw.colorize(torch.zeros(2, 2))[0, 0], draw.colorize(torch.zeros(1))[0])


def test_upscale_is_nearest_neighbour():
    a = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    out = draw.upscale(a, 4, 6)
    for y in range(4):
        for x in range(6):
            assert np.array_equal(out[y, x], a[y * 2 // 4, x * 3 // 6])


def test_activation_grid_cells_against_a_loop():
    torch.manual_seed(0)
    acts = torch.rand(10, 3, 5)
    g = draw.grid_geometry(10, 0, 16, 4, cell=8)
    grid = draw.activation_grid(acts, g, gap=1)
    assert grid.shape == (g.height, g.width, 3) == (24, 32, 3)
    vmax = float(acts.max())
    for k in range(10):
        r, c = divmod(k, 4)
        for y in range(6):
            for x in range(6):
                want = draw.colorize(acts[k, y * 3 // 6, x * 5 // 6].reshape(1), vmax)[0]
                assert np.array_equal(grid[r * 8 + 1 + y, c * 8 + 1 + x], want), (k, y, x)
    assert np.all(grid[0, :] == 40)  # gaps and empty cells: background
    assert np.all(grid[16:, 16:] == 40)  # cells 10, 11 are empty
    fc = draw.activation_grid(torch.tensor([0.0, 2.0]), draw.grid_geometry(2, 0, 16, 2, 6))
    assert np.array_equal(fc[3, 9], draw.colorize(torch.tensor([2.0]), 2.0)[0])


def test_highlight_cell_frames_only_the_selected_cell():
    base = np.zeros((20, 30, 3), np.uint8)
    g = draw.GridGeometry(first=6, count=6, cols=3, cell=10)
    out = draw.highlight_cell(base, g, unit=10, width=2)  # cell 4: row 1, column 1
    framed = np.zeros((20, 30), bool)
    framed[10:20, 10:20] = True
    framed[12:18, 12:18] = False
    assert np.all(out[framed] == draw.HIGHLIGHT) and np.all(out[~framed] == 0)
    assert np.array_equal(draw.highlight_cell(base, g, unit=3), base)  # not on this page
    assert np.all(base == 0)  # input untouched


def test_projection_rgb_keeps_sign_around_grey():
    p = torch.zeros(3, 2, 2)
    p[0, 0, 0], p[1, 1, 1] = 2.0, -1.0
    rgb = draw.projection_rgb(p)
    assert tuple(rgb[0, 0]) == (255, 128, 128)  # +max -> 1, zero -> 0.5
    assert rgb[1, 1, 1] == 64  # -max/2 -> 0.25
    assert np.all(draw.projection_rgb(torch.zeros(3, 2, 2)) == 128)


def test_tile_places_images_row_major():
    ims = [np.full((2, 2, 3), v, np.uint8) for v in (10, 20, 30, 40)]
    out = draw.tile(ims, cols=3, pad=1, fill=255)
    assert out.shape == (5, 8, 3)
    assert out[0, 0, 0] == 10 and out[0, 3, 0] == 20 and out[0, 6, 0] == 30 and out[3, 0, 0] == 40
    assert out[0, 2, 0] == 255 and out[3, 3, 0] == 255


def test_png_bytes_round_trip():
    a = np.random.default_rng(0).integers(0, 255, (7, 5, 3), dtype=np.uint8)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(draw.png_bytes(a)))), a)


# ---------------------------------------------------------------------------------------------
# The session, on a small untrained tiny network with a private cache
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return get_profile("tiny", cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def model(profile):
    torch.manual_seed(0)
    return zfnet(**profile.model_kwargs()).eval()


@pytest.fixture
def session(model, profile):
    return ExplorerSession(model, profile, page_size=16, cols=8, cell=12, panel=64)


def _forward_maps(model, x):
    """Every layer's output by plain forward hooks (independent of the explorer's pass)."""
    out = {}
    hooks = [
        get_layer(model, f"layer{i}").register_forward_hook(
            lambda m, i_, o, k=f"layer{i}": out.__setitem__(k, o[0].detach())
        )
        for i in range(1, 8)
    ]
    with torch.no_grad():
        logits = model(x)[0]
    for h in hooks:
        h.remove()
    return out, logits


def test_activations_and_prediction_match_a_forward_pass(session, model, profile):
    session.select_dataset_image(3)
    ds = get_dataset(profile, "val")
    x = normalize(ds.scenes([3]).images, profile)
    maps, logits = _forward_maps(model, x)
    acts = session.activations()
    for k, v in maps.items():
        assert torch.allclose(acts[k], v, atol=1e-6), k
    p = logits.softmax(0)
    pred = session.prediction(3)
    assert [n for n, _ in pred] == [
        session.class_names[int(i)] for i in p.argsort(descending=True)[:3]
    ]
    assert np.allclose([q for _, q in pred], p.sort(descending=True).values[:3].numpy(), atol=1e-6)
    # the strongest map by a loop
    a = maps["layer2"]
    best = max(range(a.shape[0]), key=lambda c: float(a[c].max()))
    assert session.strongest_unit("layer2") == best


def test_selections_validate_and_keep_state_consistent(session):
    n1 = session.n_units("layer1")
    session.select_layer("layer2")
    assert session.state.layer == "layer2" and session.n_units() == 32
    session.select_unit(20)
    assert session.state.page == 1  # 16 maps per page
    session.select_layer(1)  # ints work; unit clamped to layer 1
    assert session.state.unit == n1 - 1 and session.state.page == (n1 - 1) // 16
    session.select_layer("layer2")
    session.select_page(1)
    session.select_cell(3)
    assert session.state.unit == 19
    with pytest.raises(LayerError, match="unknown layer 'layer9'.*layer1, layer2"):
        session.select_layer("layer9")
    with pytest.raises(
        ExplorerError, match="feature map 32 does not exist: layer2 has maps 0 to 31"
    ):
        session.select_unit(32)
    with pytest.raises(ExplorerError, match="cell 16 is empty"):
        session.select_cell(16)
    with pytest.raises(ExplorerError, match="unknown projection rule 'lrp'"):
        session.select_rule("lrp")
    with pytest.raises(ExplorerError, match="image index 500 is out of range"):
        session.select_dataset_image(500)
    with pytest.raises(ExplorerError, match="unknown sample photo 'dog'"):
        session.select_sample("dog")
    with pytest.raises(ExplorerError, match="occlusion square of 0 pixels"):
        session.select_occlusion_size(0)
    assert session.state.unit == 19  # failed choices change nothing


def test_grid_panel_is_the_drawn_page_with_the_selection(session, model):
    session.select_dataset_image(1)
    session.select_layer("layer2")
    session.select_unit(21)
    maps, _ = _forward_maps(model, session.model_input())
    g = draw.grid_geometry(32, 1, 16, 8, 12)
    want = draw.highlight_cell(draw.activation_grid(maps["layer2"], g), g, 21)
    assert np.array_equal(session.grid_panel(), want)


def test_projection_is_the_strongest_activation_projected(session, model):
    session.select_dataset_image(2)
    session.select_layer("layer3")
    session.select_unit(5)
    session.select_rule("guided")
    x = session.model_input()
    a = _forward_maps(model, x)[0]["layer3"][5]
    y, xx = max(
        ((i, j) for i in range(a.shape[0]) for j in range(a.shape[1])), key=lambda ij: float(a[ij])
    )
    want = project(model, x, "layer3", requests(0, 5, y, xx), rule="guided").pixels[0]
    assert torch.allclose(session.projection(), want, atol=1e-6)
    assert session.captions()["projection"].startswith(
        f"guided projection of map 5's strongest activation at (y={y}, x={xx})"
    )
    session.select_layer("layer7")  # a unit has no position
    assert session.strongest_position() is None
    assert session.projection().shape == x.shape[1:]


@pytest.mark.slow
def test_top9_against_brute_force(session, model, profile):
    session.select_layer("layer4")
    session.select_unit(7)
    session.select_rule("deconvnet")
    ds = get_dataset(profile, "val")
    scenes = ds.scenes(list(range(len(ds))))
    strongest = []
    for i in range(len(ds)):
        a = _forward_maps(model, normalize(scenes.images[i : i + 1], profile))[0]["layer4"][7]
        strongest.append((float(a.max()), i))
    want = sorted(strongest, key=lambda t: (-t[0], t[1]))[:9]
    top = session.top()
    assert top["images"].tolist() == [i for _, i in want]
    assert np.allclose(top["values"].numpy(), [v for v, _ in want], atol=1e-5)
    # each patch is the part of the activation's receptive field inside its image
    rf = receptive_field(model, "layer4")
    assert len(top["patches"]) == len(top["projections"]) == 9
    for k in range(3):
        i = int(top["images"][k])
        a = _forward_maps(model, normalize(scenes.images[i : i + 1], profile))[0]["layer4"][7]
        y, x = divmod(int(a.argmax()), a.shape[-1])
        lo_y, lo_x = rf.offset + y * rf.stride, rf.offset + x * rf.stride
        y0, y1 = max(0, lo_y), min(profile.image_size, lo_y + rf.size)
        x0, x1 = max(0, lo_x), min(profile.image_size, lo_x + rf.size)
        patch = top["patches"][k]
        side = max(y1 - y0, x1 - x0)
        assert patch.shape == (3, side, side)
        t, l = (side - (y1 - y0)) // 2, (side - (x1 - x0)) // 2
        assert torch.equal(
            patch[:, t : t + y1 - y0, l : l + x1 - x0], scenes.images[i][:, y0:y1, x0:x1]
        )
        assert top["projections"][k].shape == patch.shape
    proj, patches, caption = session.top_panels()
    assert proj.shape == patches.shape and proj.dtype == np.uint8
    assert "its 9 strongest activations over 128 val images" in caption
    # fully connected layers: whole images
    session.select_layer("layer6")
    assert session.top()["patches"][0].shape[-1] == profile.image_size


def test_occlusion_follows_the_selection(session, model):
    from zfcore.occlusion import occlude

    session.select_dataset_image(4)
    session.select_layer("layer5")
    session.select_unit(2)
    session.select_occlusion_size(16)
    r = session.occlusion()
    assert (r.layer, r.feature, r.window, r.target) == ("layer5", 2, 16, session.image()[1])
    want = occlude(
        model,
        session.model_input(),
        session.image()[1],
        window=16,
        stride=session.occlusion_stride(16),
        layer="layer5",
        feature=2,
        incremental=False,
    )
    assert torch.allclose(r.feature_total, want.feature_total, rtol=1e-4, atol=1e-4)
    assert session.occlusion() is r  # cached
    panel, caption = session.occlusion_panel()
    assert panel.shape[1] > panel.shape[0] and "layer5 map 2 activity" in caption


def _png_bytes(seed=0, size=(40, 30)) -> bytes:
    a = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_decodes_like_load_image(session, profile, tmp_path):
    from zfcore.data import load_image

    data = _png_bytes()
    session.upload("holiday.png", data)
    (tmp_path / "holiday.png").write_bytes(data)
    assert torch.equal(
        session.image()[0], load_image(tmp_path / "holiday.png", profile, normalized=False)
    )
    assert session.state.source == "upload" and session.image()[1] is None
    assert session.captions()["image"] == "your file 'holiday.png'"
    with pytest.raises(ExplorerError, match="'notes.png'"):
        session.upload("notes.png", b"not an image at all")
    with pytest.raises(ExplorerError, match="empty"):
        session.upload("empty.png", b"")
    assert session.state.upload.startswith("holiday.png#")


def test_projection_on_object_by_hand(session, monkeypatch):
    session.select_dataset_image(0)
    p = torch.zeros(3, 64, 64)
    p[0, 10:20, 10:20] = 1.0  # 100 units of energy inside the box
    p[1, 50, 50] = 10.0  # 100 outside
    monkeypatch.setattr(session, "projection", lambda: p)
    monkeypatch.setattr(session, "object_box", lambda: (5, 5, 25, 25))
    energy, area = session.projection_on_object()
    assert energy == pytest.approx(0.5) and area == pytest.approx(400 / 4096)


def test_the_session_runs_in_eval_mode_and_leaves_the_callers_mode(model, profile):
    """One eval-mode policy: every panel is computed with the network in eval mode (dropout off),
    and the caller's model keeps its own mode, module by module, after every computation."""
    import copy

    caller = copy.deepcopy(model).train()
    get_layer(caller, "layer6").eval()  # a mixed mode the caller chose
    modes = {n: m.training for n, m in caller.named_modules()}
    ours = ExplorerSession(caller, profile, page_size=16, cols=8, cell=12, panel=64)
    ref = ExplorerSession(model, profile, page_size=16, cols=8, cell=12, panel=64)
    for s in (ours, ref):
        s.select_dataset_image(5)
        s.select_layer("layer7")  # after two dropouts: train mode would show
        s.select_unit(s.strongest_unit())
        s.select_occlusion_size(60)
    got, want = ours.snapshot_panels(occlusion=True), ref.snapshot_panels(occlusion=True)
    assert list(got) == list(want)
    for title in want:
        assert np.array_equal(got[title], want[title]), title
    assert torch.allclose(ours.activations()["logits"], ref.activations()["logits"], atol=1e-6)
    assert {n: m.training for n, m in caller.named_modules()} == modes
    assert not model.training  # the eval model stays in eval mode too


@pytest.mark.slow
def test_the_session_imports_without_a_front_end():
    """The headless session and the focus analysis import (and compute) without ipywidgets."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys\n"
        "import zfcore.widgets, zfcore.widgets.session, zfcore.focus, zfcore.paper.controls\n"
        "import zfcore.paper.explorer\n"
        "assert 'ipywidgets' not in sys.modules, 'ipywidgets imported at module level'\n"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]


# ---------------------------------------------------------------------------------------------
# The widgets, driven through their callbacks
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def app(session):
    return Explorer(session, profiles=("tiny",))


def test_layer_and_cell_clicks_redraw(app):
    s = app.session
    grid0, map0 = app.grid_img.value, app.map_img.value
    app.layer_tb.value = "layer2"
    assert s.state.layer == "layer2" and app.unit_box.max == 31
    assert app.grid_img.value != grid0 and app.map_img.value != map0
    assert (
        len(app.grid_box.children) == 16
        and app.grid_box.layout.grid_template_columns == "repeat(8, 12px)"
    )
    app.next_btn.click()
    assert s.state.page == 1 and app.grid_buttons[0].tooltip == "map 16"
    map1 = app.map_img.value
    app.grid_buttons[5].click()
    assert s.state.unit == 21 and app.unit_box.value == 21 and app.map_img.value != map1
    app.unit_box.value = 2  # typing a number turns the page back
    assert s.state.page == 0 and app.prev_btn.disabled
    assert "\u2713" in app.status.value, app.status.value
    assert len(app.timings.records) >= 5


def test_rule_redraws_only_the_projections(app):
    app.layer_tb.value = "layer3"  # (in layer 1 the three rules agree: no ReLU to walk back)
    grid, proj, top = app.grid_img.value, app.proj_img.value, app.top_proj_img.value
    app.rule_tb.value = "gradient"
    assert app.session.state.rule == "gradient"
    assert app.proj_img.value != proj and app.top_proj_img.value != top
    assert app.grid_img.value == grid


def test_images_sample_upload_and_errors(app):
    img0 = app.image_img.value
    app.index_box.value = 7
    assert app.session.state.index == 7 and app.image_img.value != img0
    app.source_tb.value = "sample"
    assert app.session.state.source == "sample"
    img1 = app.image_img.value
    content = _png_bytes(seed=3)
    now = datetime.datetime.now(datetime.timezone.utc)
    app.upload_w.value = (
        {
            "name": "mine.png",
            "type": "image/png",
            "size": len(content),
            "content": memoryview(content),
            "last_modified": now,
        },
    )
    assert app.session.state.source == "upload" and app.source_tb.value == "upload"
    assert app.image_img.value != img1
    before = app.session.state
    app.upload_w.value = (
        {
            "name": "broken.jpg",
            "type": "image/jpeg",
            "size": 3,
            "content": memoryview(b"abc"),
            "last_modified": now,
        },
    )
    assert "\u26a0" in app.status.value and "broken.jpg" in app.status.value
    assert app.session.state == before


@pytest.mark.slow
def test_occlusion_button(app):
    app.layer_tb.value = "layer5"
    empty = app.occ_img.value
    app.occ_size_dd.value = app.occ_size_dd.options[-1][1]
    app.occ_btn.click()
    assert app.occ_img.value != empty and "activity" in app.captions["occlusion"].value
    app.index_box.value = 9  # a new image clears the map
    assert "press 'occlusion map'" in app.captions["occlusion"].value


def test_scripted_tour_succeeds(app):
    start, image = app.session.state, app.image_img.value
    tour = scripted_tour(app, steps=12, seed=1)
    assert app.session.state == start and app.image_img.value == image  # restored
    assert len(tour.records) == len(tour.states) == 12
    assert {k for k, _ in tour.records} == {"layer", "cell", "strongest", "rule", "image"}
    assert "\u26a0" not in app.status.value
    assert tour.percentile(50, skip_first=False) > 0


def test_switching_models(session, profile, model):
    calls = []

    def factory(name, arch):
        calls.append((name, arch))
        if arch == "broken":
            raise ValueError("no such model on disk")
        torch.manual_seed(1)
        return ExplorerSession(
            zfnet(**profile.model_kwargs()), profile, page_size=16, cols=8, cell=12, panel=64
        )

    app = Explorer(
        session, profiles=("tiny",), archs=("zfnet", "other", "broken"), session_factory=factory
    )
    app.session.select_layer("layer3")
    app.arch_dd.value = "other"
    assert calls == [("tiny", "other")] and app.session is not session
    assert app.session.state.layer == "layer3"  # the choice survives the switch
    current = app.session
    app.arch_dd.value = "broken"
    assert app.session is current and "no such model on disk" in app.status.value
    assert app.arch_dd.value == "other"


def test_bad_construction_is_explained(model, profile):
    with pytest.raises(ExplorerError, match="takes 64px inputs but profile 'mini' makes 112px"):
        ExplorerSession(model, "mini")
    with pytest.raises(ExplorerError, match="cell must be a positive integer"):
        ExplorerSession(model, profile, cell=0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ExplorerSession("model", profile)


@pytest.mark.slow
def test_benchmark_quick_run(capsys):
    import re

    from benchmarks import explorer as bench

    assert bench.main(["--quick"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"RESULT explorer p95_s=[\d.]+ first_s=[\d.]+ .*profile=tiny target_met=(yes|no)", last
    ), last


def test_crop_square_letterboxes_without_stretching():
    img = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    out = draw.crop_square(img, (1, 0, 6, 3), fill=-1.0)  # x0, y0, x1, y1: 5 wide, 3 high
    assert out.shape == (2, 5, 5)
    assert torch.equal(out[:, 1:4, :], img[:, 0:3, 1:6])
    assert torch.all(out[:, 0] == -1) and torch.all(out[:, 4] == -1)
