"""The explorer's ipywidgets view (notebook 12): controls and panels around a session.

:class:`Explorer` lays out the controls (profile and model, image source, layer, feature map,
projection rule, occlusion square) and the panels (image and prediction, activation grid with a
clickable cell per map, selected map, projection, top-9 projections and patches, occlusion map)
around an :class:`~zfcore.widgets.session.ExplorerSession`. It computes nothing itself: each
control calls one session method, then only the panels its change touches are redrawn (PNG bytes
from :mod:`zfcore.plotting.explorer`). A failing choice is shown in the status line, not raised.

Launch it in JupyterLab (``notebooks/12_explorer.ipynb``) or as a web app with Voila::

    voila notebooks/12_explorer.ipynb

``ipywidgets`` is imported when an :class:`Explorer` is built, so the session and the analyses
import without a front end.
"""

from __future__ import annotations

import contextlib
import html
import logging
import threading
import time
from typing import Any, Callable, Sequence

import numpy as np

from ..plotting import explorer as draw
from .session import ExplorerSession
from .state import RULES, ExplorerError, ExplorerState
from .tour import Timings

__all__ = ["Explorer"]

UNIT_PARTS = frozenset({"grid", "map", "projection", "top9"})
IMAGE_PARTS = frozenset({"image", "grid", "map", "projection", "occlusion"})
ALL_PARTS = UNIT_PARTS | IMAGE_PARTS


def _px(n: int) -> str:
    return f"{int(n)}px"


class Explorer:
    """The ipywidgets app around an :class:`ExplorerSession` (display it, or ``app.widget``).

    Every control calls one session method and then redraws only the panels its change touches;
    a failing choice (a file that is not an image, say) is reported in the status line instead of
    raising into the notebook. ``timings`` records how long each callback took.

    >>> app = Explorer(profile="mini")  # the trained ZF-mini (cached)       # doctest: +SKIP
    >>> app  # shows the app in JupyterLab or Voila                         # doctest: +SKIP
    """

    def __init__(
        self,
        session: ExplorerSession | None = None,
        *,
        profile: str = "mini",
        arch: str = "zfnet",
        profiles: Sequence[str] = ("tiny", "mini"),
        archs: Sequence[str] = ("zfnet", "krizhevsky"),
        session_factory: Callable[..., ExplorerSession] | None = None,
        refine_delay: "float | None" = 1.0,
    ):
        import ipywidgets as W

        self._factory = session_factory or ExplorerSession.for_profile
        # occlusion: the fast map first, the exact one after refine_delay seconds without an
        # action (None: only on request, a second press of the occlusion button)
        self.refine_delay = refine_delay
        self._occ_shown: "tuple | None" = None  # (occlusion key, mode) of the map on show
        self._actions = 0  # user actions so far (an idle timer's check)
        self._refine_timer: "threading.Timer | None" = None
        self._lock = threading.RLock()  # one action at a time (the timer's included)
        self.timings = Timings()
        self._syncing = False
        self._shown_first = -1
        if session is None:
            session = self._factory(profile, arch)
        self.session = session
        self._arch = arch
        s = session
        profiles = list(dict.fromkeys([*profiles, s.profile.name]))
        archs = list(dict.fromkeys([*archs, arch]))

        # --- controls -------------------------------------------------------------------------
        small = W.Layout(width="auto")
        label = {"description_width": "0px"}
        self.profile_dd = W.Dropdown(
            options=profiles,
            value=s.profile.name,
            description="profile",
            layout=W.Layout(width="170px"),
        )
        self.arch_dd = W.Dropdown(
            options=archs, value=arch, description="model", layout=W.Layout(width="200px")
        )
        self.layer_tb = W.ToggleButtons(
            options=[(k.replace("layer", ""), k) for k in s.layers],
            value=s.state.layer,
            style={**label, "button_width": "34px"},
            layout=small,
        )
        self.unit_box = W.BoundedIntText(
            value=0,
            min=0,
            max=s.n_units() - 1,
            description="map",
            style={"description_width": "40px"},
            layout=W.Layout(width="130px"),
        )
        self.strongest_btn = W.Button(
            description="strongest map",
            tooltip="select the layer's most active map on this image",
            layout=W.Layout(width="130px"),
        )
        self.prev_btn = W.Button(
            description="\u25c0", tooltip="previous page of maps", layout=W.Layout(width="40px")
        )
        self.next_btn = W.Button(
            description="\u25b6", tooltip="next page of maps", layout=W.Layout(width="40px")
        )
        self.rule_tb = W.ToggleButtons(
            options=list(RULES),
            value=s.state.rule,
            layout=small,
            style={**label, "button_width": "90px"},
        )
        self.source_tb = W.ToggleButtons(
            options=[("data set", "dataset"), ("sample photo", "sample"), ("my file", "upload")],
            value=s.state.source,
            layout=small,
            style={**label, "button_width": "100px"},
        )
        self.index_box = W.BoundedIntText(
            value=s.state.index,
            min=0,
            max=max(0, len(s.dataset) - 1),
            description="index",
            style={"description_width": "40px"},
            layout=W.Layout(width="130px"),
        )
        self.sample_dd = W.Dropdown(
            options=s.sample_names(),
            value=s.state.sample,
            description="photo",
            style={"description_width": "40px"},
            layout=W.Layout(width="170px"),
        )
        self.upload_w = W.FileUpload(accept="image/*", multiple=False, description="upload")
        self.occ_size_dd = W.Dropdown(
            options=[(f"{n} px", n) for n in s.occlusion_sizes()],
            value=s.state.occlusion_size
            if s.state.occlusion_size in s.occlusion_sizes()
            else s.occlusion_sizes()[0],
            description="square",
            layout=W.Layout(width="160px"),
        )
        self.occ_btn = W.Button(
            description="occlusion map",
            icon="th",
            tooltip="slide a grey square over the image (Fig. 7)",
        )
        # tqdm draws its progress bar here while the occlusion map is computed
        self.occ_progress = W.Output(layout=W.Layout(width="100%"))
        self.status = W.HTML(value="")
        # tqdm draws progress bars here while another model is loaded (or trained, first time)
        self.model_progress = W.Output()

        # --- panels ---------------------------------------------------------------------------
        p = _px(s.panel)
        self.image_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.map_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.proj_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.top_proj_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.top_patch_img = W.Image(format="png", layout=W.Layout(width=p, height=p))
        self.occ_img = W.Image(format="png", layout=W.Layout(width=_px(2 * s.panel + 2), height=p))
        self.prediction_html = W.HTML()
        widths = {"grid": "auto", "occlusion": _px(2 * s.panel + 2)}
        self.captions = {
            k: W.HTML(layout=W.Layout(width=widths.get(k, p)))
            for k in ("image", "grid", "map", "projection", "top9", "occlusion")
        }
        # The activation grid: the rendered page with a grid of transparent buttons on top (same
        # CSS grid area), one per cell, so a click on a cell selects its map in Voila and
        # JupyterLab without extra packages.
        self.grid_img = W.Image(format="png", layout=W.Layout(grid_area="cell", margin="0"))
        cell = _px(s.cell)
        shared_layout = W.Layout(width=cell, height=cell, padding="0", margin="0", border="0")
        shared_style = W.ButtonStyle(button_color="transparent")
        self.grid_buttons = [
            W.Button(description="", layout=shared_layout, style=shared_style)
            for _ in range(s.page_size)
        ]
        for k, b in enumerate(self.grid_buttons):
            b.on_click(self._cell_handler(k))
        self.grid_box = W.GridBox(layout=W.Layout(grid_area="cell", grid_gap="0", margin="0"))
        self.grid_box.add_class("zf-grid-cells")
        self.grid_stack = W.GridBox(
            [self.grid_img, self.grid_box], layout=W.Layout(grid_template_areas='"cell"')
        )
        self.grid_stack.add_class("zf-grid")

        def labelled(title, *items):
            return W.HBox(
                [W.HTML(f"<b>{title}</b>", layout=W.Layout(width="80px")), *items],
                layout=W.Layout(align_items="center"),
            )

        def column(title, img, cap, *extra):
            return W.VBox([W.HTML(f"<b>{title}</b>"), img, cap, *extra])

        header = W.HTML(
            "<h3 style='margin:4px 0'>Explorer: Zeiler &amp; Fergus (2014), "
            "layers 1-7 of a trained ZF network</h3>"
        )
        rows = [
            header,
            W.HBox([self.profile_dd, self.arch_dd]),
            labelled("image", self.source_tb, self.index_box, self.sample_dd, self.upload_w),
            labelled("layer", self.layer_tb, self.unit_box, self.strongest_btn),
            labelled("projection", self.rule_tb),
            self.status,
            self.model_progress,
            W.HBox(
                [
                    column("image", self.image_img, self.captions["image"], self.prediction_html),
                    W.VBox(
                        [
                            W.HTML("<b>activation grid</b>"),
                            self.grid_stack,
                            W.HBox([self.prev_btn, self.next_btn, self.captions["grid"]]),
                        ]
                    ),
                ]
            ),
            W.HBox(
                [
                    column("selected map", self.map_img, self.captions["map"]),
                    column("projection to pixels", self.proj_img, self.captions["projection"]),
                    column("top-9 projections (Fig. 2)", self.top_proj_img, self.captions["top9"]),
                    column("top-9 image patches", self.top_patch_img, W.HTML()),
                ]
            ),
            W.HBox(
                [
                    column(
                        "occlusion (Fig. 7): the map's activity and p(class) as a grey square "
                        "covers each spot",
                        self.occ_img,
                        self.captions["occlusion"],
                        W.HBox([self.occ_size_dd, self.occ_btn]),
                        self.occ_progress,
                    )
                ]
            ),
        ]
        self.widget = W.VBox(rows)
        self.widget.add_class("zf-explorer")
        # Stable CSS classes: for styling, and for the browser test to find each part.
        for w, name in (
            (self.image_img, "zf-image"),
            (self.grid_img, "zf-grid-image"),
            (self.map_img, "zf-map"),
            (self.proj_img, "zf-projection"),
            (self.top_proj_img, "zf-top-projections"),
            (self.top_patch_img, "zf-top-patches"),
            (self.occ_img, "zf-occlusion"),
            (self.layer_tb, "zf-layer"),
            (self.rule_tb, "zf-rule"),
            (self.source_tb, "zf-source"),
            (self.unit_box, "zf-unit"),
            (self.upload_w, "zf-upload"),
            (self.status, "zf-status"),
            (self.occ_btn, "zf-occlusion-button"),
        ):
            w.add_class(name)

        # --- events ---------------------------------------------------------------------------
        self.layer_tb.observe(self._follow("select_layer", "show {}", UNIT_PARTS), "value")
        self.unit_box.observe(self._follow("select_unit", "select map {}", UNIT_PARTS), "value")
        self.strongest_btn.on_click(self._on_strongest)
        self.prev_btn.on_click(lambda _: self._on_page(-1))
        self.next_btn.on_click(lambda _: self._on_page(+1))
        self.rule_tb.observe(
            self._follow("select_rule", "{} rule", {"projection", "top9"}), "value"
        )
        self.source_tb.observe(self._on_source, "value")
        self.index_box.observe(
            self._follow("select_dataset_image", "image {}", IMAGE_PARTS), "value"
        )
        self.sample_dd.observe(self._follow("select_sample", "photo {}", IMAGE_PARTS), "value")
        self.upload_w.observe(self._on_upload, "value")
        self.occ_size_dd.observe(
            self._follow("select_occlusion_size", "{} px square", {"occlusion"}), "value"
        )
        self.occ_btn.on_click(self._on_occlusion)
        self.profile_dd.observe(self._on_model, "value")
        self.arch_dd.observe(self._on_model, "value")

        self._act("first draw", session.prepare, ALL_PARTS)

    # ------------------------------------------------------------------ display
    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    def show_state(self, state: ExplorerState) -> bool:
        """Go back to a state of this session (e.g. one saved before a scripted tour)."""

        def change():
            if state.source == "upload" and state.upload not in self.session._uploads:
                raise ExplorerError("that uploaded file is no longer in this session")
            self.session.state = state

        return self._act("restore the view", change, ALL_PARTS)

    # ------------------------------------------------------------------ drawing
    def _act(
        self, action: str, change: Callable[[], Any], parts: "set[str] | frozenset[str]"
    ) -> bool:
        """Apply one user action: the session change, then the redraw of ``parts``, with the
        session's thread count (:meth:`ExplorerSession.computing`); the time it took goes to
        ``timings`` and the status line. Errors are shown, not raised."""
        with self._lock:
            self._actions += 1
            ok = self._act_locked(action, change, parts)
        self._schedule_refine()
        return ok

    def _act_locked(self, action: str, change: Callable[[], Any], parts) -> bool:
        t0 = time.perf_counter()
        self.status.value = f"<span style='color:#666'>\u23f3 {action} ...</span>"
        try:
            with self.session.computing():
                change()
                self._redraw(parts)
        except Exception as e:  # shown in the app: a callback's exception is otherwise invisible
            if isinstance(e, (ExplorerError, ValueError, TypeError)):
                message = str(e)
            else:
                logging.getLogger(__name__).exception("explorer: %s failed", action)
                message = f"{action} failed ({type(e).__name__}: {e})"
            self.status.value = f"<span style='color:#b00020'>\u26a0 {_escape(message)}</span>"
            with contextlib.suppress(Exception):
                self._sync_controls()
            return False
        dt = time.perf_counter() - t0
        self.timings.add(action, dt)
        self.status.value = (
            f"<span style='color:#2e7d32'>\u2713 {_escape(action)} in {dt:.2f} s</span>"
        )
        return True

    def _redraw(self, parts) -> None:
        s = self.session
        if "image" in parts:
            self.image_img.value = draw.png_bytes(s.image_panel())
            self.prediction_html.value = _prediction_html(s.prediction())
        if "grid" in parts:
            g = s.geometry()
            self.grid_img.value = draw.png_bytes(s.grid_panel())
            self._layout_grid(g)
        if "map" in parts:
            self.map_img.value = draw.png_bytes(s.feature_map_panel())
        if "projection" in parts:
            self.proj_img.value = draw.png_bytes(s.projection_panel())
        if "top9" in parts:
            projections, patches, caption = s.top_panels()
            self.top_proj_img.value = draw.png_bytes(projections)
            self.top_patch_img.value = draw.png_bytes(patches)
            self.captions["top9"].value = _caption(caption)
        if "occlusion" in parts:
            self._show_occlusion(None)
        caps = s.captions()
        for k in ("image", "grid", "map", "projection"):
            self.captions[k].value = _caption(caps[k])
        self._sync_controls()

    def _layout_grid(self, g: draw.GridGeometry) -> None:
        size = dict(width=_px(g.width), height=_px(g.height))
        self.grid_img.layout.width, self.grid_img.layout.height = size["width"], size["height"]
        lay = self.grid_box.layout
        cols = f"repeat({g.cols}, {_px(g.cell)})"
        rows = f"repeat({g.rows}, {_px(g.cell)})"
        if lay.grid_template_columns != cols:
            lay.grid_template_columns = cols
        if lay.grid_template_rows != rows:
            lay.grid_template_rows = rows
        lay.width, lay.height = size["width"], size["height"]
        if len(self.grid_box.children) != g.count:
            self.grid_box.children = tuple(self.grid_buttons[: g.count])
        if self._shown_first != g.first:
            for k, b in enumerate(self.grid_buttons[: g.count]):
                b.tooltip = f"map {g.first + k}"
            self._shown_first = g.first

    def _show_occlusion(
        self, result_png: bytes | None, caption: str = "", shown: "tuple | None" = None
    ) -> None:
        """Show an occlusion panel (``shown``: its occlusion key and mode) or clear it."""
        if result_png is None:
            self.occ_img.value = draw.png_bytes(np.full((8, 16, 3), 235, np.uint8))
            caption = "press 'occlusion map' to slide a grey square over this image"
        else:
            self.occ_img.value = result_png
        self._occ_shown = shown if result_png is not None else None
        approximate = self._occ_shown is not None and self._occ_shown[1] != "exact"
        self.occ_btn.description = "exact occlusion map" if approximate else "occlusion map"
        self.captions["occlusion"].value = _caption(caption)

    def _occlusion_shown(self, mode: str) -> bool:
        return self._occ_shown == (self.session._occlusion_key(mode), mode)

    def _schedule_refine(self) -> None:
        """After the fast map is shown, refine it to the exact one once the user has left the
        controls alone for :attr:`refine_delay` seconds."""
        if self._refine_timer is not None:
            self._refine_timer.cancel()
            self._refine_timer = None
        if self.refine_delay is None or not self._occlusion_shown("fast"):
            return
        self._refine_timer = threading.Timer(
            self.refine_delay, self._refine_if_idle, args=(self._actions,)
        )
        self._refine_timer.daemon = True
        self._refine_timer.start()

    def _refine_if_idle(self, actions: int) -> None:
        with self._lock:
            if actions == self._actions and self._occlusion_shown("fast"):
                self._act(
                    "exact occlusion map", lambda: self._occlusion_change("exact", False), set()
                )

    def _occlusion_change(self, mode: str, progress: bool) -> None:
        s = self.session
        with self.occ_progress:
            panel, caption = s.occlusion_panel(progress=progress, mode=mode)
        self.occ_progress.clear_output()
        self._show_occlusion(draw.png_bytes(panel), caption, (s._occlusion_key(mode), mode))

    def _sync_controls(self) -> None:
        """Make the controls show the session's state (without firing their callbacks)."""
        s, st = self.session, self.session.state
        self._syncing = True
        try:
            self.layer_tb.value = st.layer
            self.unit_box.max = s.n_units() - 1
            self.unit_box.value = st.unit
            self.rule_tb.value = st.rule
            self.source_tb.value = st.source
            self.index_box.value = st.index
            self.sample_dd.value = st.sample
            self.prev_btn.disabled = st.page == 0
            self.next_btn.disabled = st.page >= s.n_pages() - 1
        finally:
            self._syncing = False

    # ------------------------------------------------------------------ callbacks
    def _cell_handler(self, k: int):
        def handler(_button):
            self._act(
                f"select map {self.session.geometry().first + k}",
                lambda: self.session.select_cell(k),
                UNIT_PARTS,
            )

        return handler

    def _follow(self, method: str, label: str, parts: set) -> Callable:
        """The observer of a control whose new value goes to the session's ``method`` as one
        action named ``label.format(value)`` that redraws ``parts`` (not while the controls are
        being synced to the session). The session is looked up at each change: a model switch
        replaces it."""

        def on_change(change) -> None:
            if not self._syncing:
                value = change["new"]
                self._act(label.format(value), lambda: getattr(self.session, method)(value), parts)

        return on_change

    def _on_strongest(self, _button) -> None:
        self._act(
            "select the strongest map",
            lambda: self.session.select_unit(self.session.strongest_unit()),
            UNIT_PARTS,
        )

    def _on_page(self, step: int) -> None:
        self._act(
            "turn the page",
            lambda: self.session.select_page(self.session.state.page + step),
            {"grid"},
        )

    def _on_source(self, change) -> None:
        if self._syncing:
            return
        s = self.session
        if change["new"] == "dataset":
            self._act(
                "data set image", lambda: s.select_dataset_image(self.index_box.value), IMAGE_PARTS
            )
        elif change["new"] == "sample":
            self._act("sample photo", lambda: s.select_sample(self.sample_dd.value), IMAGE_PARTS)
        elif self.upload_w.value:
            self._on_upload({"new": self.upload_w.value})
        else:
            self.status.value = (
                "<span style='color:#666'>choose a photo with the upload button "
                "to explore it</span>"
            )

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        f = files[0] if isinstance(files, (tuple, list)) else next(iter(files.values()))
        self._act(
            f"upload {f['name']}", lambda: self.session.upload(f["name"], f["content"]), IMAGE_PARTS
        )

    def _on_occlusion(self, _button=None) -> None:
        """Show the occlusion map of the current image: the fast (approximate) one first, the
        exact one on a second press or once the controls are left alone (behind a progress bar)."""
        refine = self._occlusion_shown("fast")

        def change():
            self.session.select_occlusion_size(self.occ_size_dd.value)
            self._occlusion_change("exact" if refine else self.session.occlusion_mode(), True)

        self.occ_btn.disabled = True
        try:
            self._act("exact occlusion map" if refine else "occlusion map", change, set())
        finally:
            self.occ_btn.disabled = False

    def _on_model(self, change) -> None:
        if self._syncing:
            return
        profile, arch = self.profile_dd.value, self.arch_dd.value
        self.status.value = (
            f"<span style='color:#666'>\u23f3 loading the {arch} network of "
            f"profile {profile} (trained and cached on first use: this can take "
            f"minutes) ...</span>"
        )
        try:
            with self.model_progress:
                new = self._factory(profile, arch)
            self.model_progress.clear_output()
        except Exception as e:  # training or data problems: show them, keep the old model
            self.status.value = f"<span style='color:#b00020'>\u26a0 {_escape(str(e))}</span>"
            self._syncing = True
            self.profile_dd.value, self.arch_dd.value = self.session.profile.name, self._arch
            self._syncing = False
            return
        self._replace_session(new, arch)

    def _replace_session(self, session: ExplorerSession, arch: str) -> None:
        old = self.session
        self.session, self._arch = session, arch
        self._syncing = True
        try:
            self.layer_tb.options = [(k.replace("layer", ""), k) for k in session.layers]
            self.index_box.max = max(0, len(session.dataset) - 1)
            sizes = session.occlusion_sizes()
            self.occ_size_dd.options = [(f"{n} px", n) for n in sizes]
            self.occ_size_dd.value = min(sizes, key=lambda n: abs(n - session.state.occlusion_size))
        finally:
            self._syncing = False
        keep = old.state

        def change():
            session.prepare()
            if keep.source == "sample":
                session.select_sample(keep.sample)
            session.select_layer(keep.layer if keep.layer in session.layers else session.layers[0])

        self._act(f"{session.profile.name} model", change, ALL_PARTS)


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def _caption(text: str) -> str:
    return f"<div style='line-height:1.35;font-size:12px;color:#333'>{_escape(text)}</div>"


def _prediction_html(pred: list[tuple[str, float]]) -> str:
    cell = "style='padding:0 6px;line-height:1.3'"
    rows = "".join(
        f"<tr><td {cell}>{_escape(n)}</td><td {cell} align='right'>{100 * p:.1f}%</td></tr>"
        for n, p in pred
    )
    return (
        f"<table style='font-size:12px;border-collapse:collapse'><tr><th {cell} align='left'>"
        f"predicted</th><th></th></tr>{rows}</table>"
    )
