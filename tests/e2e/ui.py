"""Page objects for the Prefect 3.9 UI, driven by Playwright for Python (sync API).

Targets the V2 (React) UI, Prefect 3.9's default: every URL is built under ``/v2`` so a
browser's saved UI preference (cookie ``prefect_ui_version``) cannot switch it to V1.

How the UI behaves (found by exploring a server started with basic auth):

- Login: with ``PREFECT_SERVER_API_AUTH_STRING`` set, every page redirects to
  ``/v2/login?redirectTo=...``: one password field (placeholder ``admin:pass``) and a
  "Login" button. The "password" is the whole auth string (``user:password``); the UI
  keeps it base64-encoded in localStorage (``prefect-password``) and sends it as HTTP
  basic auth. Playwright's ``http_credentials`` does not help: the API answers 401
  without a ``WWW-Authenticate`` challenge and the UI redirects to the login page anyway.
- Forms are generated from the JSON schema. Each field is a block holding a ``<label>``
  ("Email (Optional)" for optional ones) and a ``<fieldset>``. An optional value
  (``X | None``) shows tabs, one per type ("str" / "None"), with "None" selected;
  choose the type's tab first. Enums are a button labelled "Select <Title>" opening a
  list of options. ``SecretStr`` is an ``<input type="password">`` (masked in
  screenshots) with no accessible label; plain strings are textareas.
- A paused or suspended run (``pause_flow_run`` / ``suspend_flow_run`` with
  ``wait_for_input``; the state is named "Paused" or "Suspended", type PAUSED) is
  resumed from the run page's
  "Open menu" -> "Resume": a "Resume Flow Run" dialog showing the RunInput's
  ``description`` (markdown) above the input form, and a "Resume" button.
- A run's artifacts are cards (links, key as heading) under the "Artifacts" tab; a card
  opens ``/v2/artifacts/artifact/<id>``.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from playwright.sync_api import Browser, Locator, Page, Playwright, ViewportSize
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
UI_PREFIX = "/v2"
VIEWPORT: ViewportSize = {"width": 1400, "height": 1000}
TALL_VIEWPORT_HEIGHT = 2400  # the resume dialog scrolls inside itself; this fits it whole
PASSWORD_KEY = "prefect-password"  # localStorage key of the V1 and V2 UIs
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
NONE_TAB = "None"


class UIError(AssertionError):
    """The UI did not do what a step expected (the message says which step and what)."""


@dataclass(frozen=True)
class RunState:
    """A flow run's state as the API reports it: ``type`` is e.g. PAUSED, COMPLETED."""

    type: str
    name: str
    message: str | None


# -- browser -----------------------------------------------------------------------------


def launch(
    playwright: Playwright, *, headless: bool = True, executable_path: str = CHROMIUM
) -> Browser:
    """Start Debian's Chromium with the flags that render the Prefect UI on this machine."""
    return playwright.chromium.launch(
        executable_path=executable_path, headless=headless, args=list(CHROMIUM_ARGS)
    )


def new_page(
    browser: Browser, *, width: int = VIEWPORT["width"], height: int = VIEWPORT["height"]
) -> Page:
    """A page in a fresh context (its own localStorage, so logged out)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    return context.new_page()


def ui_url(base_url: str, path: str = "/") -> str:
    """``base_url`` (``http://host:port``) plus a V2 UI path such as ``/deployments``."""
    return base_url.rstrip("/") + UI_PREFIX + "/" + path.lstrip("/")


def screenshot(page: Page, path: Path | str | None) -> None:
    """Save a full-page screenshot when ``path`` is given (parent folders are created)."""
    if path is None:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target), full_page=True)


# -- login -------------------------------------------------------------------------------


def login(
    page: Page,
    base_url: str,
    password: str,
    *,
    path: str = "/dashboard",
    screenshot_path: Path | str | None = None,
) -> None:
    """Log in through the UI's login page; ``password`` is the whole ``user:password``.

    Lands on ``path`` afterwards. Raises UIError when the UI refuses the credentials.
    """
    page.goto(ui_url(base_url, "/login") + "?redirectTo=" + quote(path, safe=""))
    field = page.get_by_placeholder("admin:pass")
    app = page.get_by_role("link", name="Deployments", exact=True)
    field.or_(app).first.wait_for()
    if not field.is_visible():  # no auth configured on the server, or already logged in
        return
    field.fill(password)
    page.get_by_role("button", name="Login", exact=True).click()
    refused = page.get_by_text("Invalid credentials")
    app.or_(refused).first.wait_for()
    if refused.is_visible():
        screenshot(page, screenshot_path)
        raise UIError(f"the Prefect UI at {base_url} refused the credentials")
    screenshot(page, screenshot_path)


# -- forms -------------------------------------------------------------------------------


def field_container(scope: Locator | Page, name: str) -> Locator:
    """The block of one form field, found by its label.

    ``name`` is the field's name (``requested_by``) or its title (``Requested By``);
    an " (Optional)" suffix on the label is accepted. The block is the label's nearest
    ancestor ``div`` that has a ``<fieldset>`` child (the widget).
    """
    titles = {name, name.replace("_", " ").title()}
    alternatives = "|".join(re.escape(t) for t in sorted(titles))
    label = scope.locator("label").filter(
        has_text=re.compile(rf"^\s*(?:{alternatives})(?: \(Optional\))?\s*$")
    )
    return label.first.locator("xpath=ancestor::div[fieldset][1]")


def choose_variant(container: Locator, variant: str | None = None) -> Locator:
    """Pick the type tab of an optional field (``variant`` or the first that is not
    "None"); returns the active tab panel, where the value's widget is."""
    body = container.locator(":scope > fieldset")
    tabs = body.locator(":scope > div > div[role=tablist]").first.get_by_role("tab")
    if variant is None:
        names = [t.inner_text().strip() for t in tabs.all()]
        choices = [n for n in names if n != NONE_TAB]
        if not choices:
            raise UIError(f"no type to choose in tabs {names}")
        variant = choices[0]
    tab = tabs.filter(has_text=re.compile(rf"^\s*{re.escape(variant)}\s*$")).first
    if tab.get_attribute("aria-selected") != "true":
        tab.click()
    panel_id = tab.get_attribute("aria-controls")
    if panel_id is None:
        raise UIError(f"the tab {variant!r} controls no panel")
    panel = body.locator(f'[role=tabpanel][id="{panel_id}"]')
    panel.wait_for()
    return panel


def fill_field(scope: Locator | Page, name: str, value: str) -> None:
    """Fill one schema-generated field: a text or password box, or an enum choice.

    Optional fields get their non-None type tab chosen first.
    """
    container = field_container(scope, name)
    container.wait_for()
    body = container.locator(":scope > fieldset")
    if body.locator(":scope > div > div[role=tablist]").count():
        body = choose_variant(container)
    select = body.locator('[aria-haspopup="listbox"]')
    if select.count():
        select.first.click()
        container.page.get_by_role("option", name=value, exact=True).click()
        return
    box = body.locator("input, textarea").first
    box.fill(value)


def fill_form(scope: Locator | Page, values: Mapping[str, str]) -> None:
    """Fill several fields in order (see ``fill_field``)."""
    for name, value in values.items():
        fill_field(scope, name, value)


# -- deployments and runs ----------------------------------------------------------------


def open_deployment(
    page: Page, base_url: str, name: str, *, screenshot_path: Path | str | None = None
) -> str:
    """Open a deployment from the Deployments list; returns the deployment id."""
    page.goto(ui_url(base_url, "/deployments"))
    link = page.locator('a[href*="/deployments/deployment/"]').filter(
        has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")
    )
    link.first.click()
    page.wait_for_url(re.compile(r"/deployments/deployment/[0-9a-f-]{36}"))
    page.get_by_role("button", name="Run", exact=True).wait_for()
    screenshot(page, screenshot_path)
    match = re.search(r"/deployments/deployment/([0-9a-f-]{36})", page.url)
    if match is None:
        raise UIError(f"no deployment id in {page.url}")
    return match.group(1)


def open_flow_run(
    page: Page,
    base_url: str,
    flow_run_id: str,
    *,
    tab: str | None = None,
    screenshot_path: Path | str | None = None,
) -> None:
    """Open a flow run's page (optionally on a tab: Logs, Task Runs, Artifacts, ...)."""
    path = f"/runs/flow-run/{flow_run_id}" + (f"?tab={tab}" if tab else "")
    page.goto(ui_url(base_url, path))
    page.get_by_role("tab", name="Artifacts").wait_for()
    screenshot(page, screenshot_path)


def find_flow_run(
    page: Page, base_url: str, name: str, *, screenshot_path: Path | str | None = None
) -> str:
    """Find a flow run by its name in the Runs page's search box and open it; its id.

    The name must match exactly (runs of subject-request are named after the request id).
    """
    page.goto(ui_url(base_url, "/runs"))
    search = page.get_by_placeholder(re.compile(r"^Search by (flow )?run name$")).first
    search.wait_for()
    search.fill(name)
    link = page.locator('a[href*="/runs/flow-run/"]').filter(
        has_text=re.compile(rf"^\s*{re.escape(name)}\s*$")
    )
    link.first.wait_for()
    runs = page.locator('a[href*="/runs/flow-run/"]')
    deadline = time.monotonic() + 15
    while runs.count() != link.count():  # the search filters the list after a pause
        if time.monotonic() > deadline:
            raise UIError(f"the Runs search for {name!r} still lists other runs")
        page.wait_for_timeout(250)
    if link.count() != 1:
        raise UIError(f"{link.count()} runs named {name!r} in the Runs list")
    _settled(page)
    screenshot(page, screenshot_path)
    link.first.click()
    page.wait_for_url(re.compile(r"/runs/flow-run/[0-9a-f-]{36}"))
    page.get_by_role("tab", name="Artifacts").wait_for()
    match = re.search(r"/runs/flow-run/([0-9a-f-]{36})", page.url)
    if match is None:
        raise UIError(f"no flow run id in {page.url}")
    return match.group(1)


def expect_state_badge(page: Page, state_name: str, *, timeout_s: float = 30.0) -> None:
    """Wait until the flow run page shows ``state_name`` (e.g. "Paused"); it refreshes itself."""
    page.get_by_text(state_name, exact=True).first.wait_for(timeout=timeout_s * 1000)


# -- state through the API ---------------------------------------------------------------


def api_headers(page: Page, base_url: str) -> dict[str, str]:
    """The Authorization header the UI uses, from the page's logged-in localStorage."""
    origin = base_url.rstrip("/")
    for entry in page.context.storage_state()["origins"]:
        if entry["origin"].rstrip("/") != origin:
            continue
        for item in entry["localStorage"]:
            if item["name"] == PASSWORD_KEY and item["value"]:
                return {"Authorization": f"Basic {item['value']}"}
    return {}


def basic_auth_headers(password: str) -> dict[str, str]:
    """The Authorization header for an auth string ``user:password`` (no UI needed)."""
    return {"Authorization": "Basic " + base64.b64encode(password.encode()).decode()}


def flow_run_state(page: Page, base_url: str, flow_run_id: str) -> RunState:
    """The flow run's current state, read from the API with the page's credentials."""
    response = page.request.get(
        f"{base_url.rstrip('/')}/api/flow_runs/{flow_run_id}",
        headers=api_headers(page, base_url),
    )
    if not response.ok:
        raise UIError(f"reading flow run {flow_run_id}: HTTP {response.status}")
    run: dict[str, Any] = response.json()
    state: dict[str, Any] = run.get("state") or {}
    return RunState(
        type=str(run.get("state_type")),
        name=str(run.get("state_name")),
        message=state.get("message"),
    )


def wait_for_state(
    page: Page,
    base_url: str,
    flow_run_id: str,
    state: str | Iterable[str],
    *,
    timeout_s: float = 180.0,
    poll_s: float = 0.5,
) -> RunState:
    """Poll the API until the run's state type is ``state`` (e.g. "PAUSED", "COMPLETED").

    Fails at once when the run ends in another terminal state, with its message.
    """
    wanted = {state.upper()} if isinstance(state, str) else {s.upper() for s in state}
    deadline = time.monotonic() + timeout_s
    current = flow_run_state(page, base_url, flow_run_id)
    while current.type not in wanted:
        if current.type in TERMINAL_STATES:
            raise UIError(
                f"flow run {flow_run_id} ended {current.name}, not {sorted(wanted)}: "
                f"{current.message}"
            )
        if time.monotonic() > deadline:
            raise UIError(
                f"flow run {flow_run_id} still {current.name} after {timeout_s:.0f} s "
                f"(waiting for {sorted(wanted)})"
            )
        page.wait_for_timeout(poll_s * 1000)
        current = flow_run_state(page, base_url, flow_run_id)
    return current


# -- pause and resume --------------------------------------------------------------------


def wait_for_input_form(
    page: Page, base_url: str, flow_run_id: str, *, timeout_s: float = 30.0
) -> str:
    """Wait until a paused run's RunInput schema is stored; returns the schema's key.

    ``pause_flow_run`` sets the Paused state *before* it saves the schema the Resume
    dialog renders, so a dialog opened in between would have no form.
    """
    api = f"{base_url.rstrip('/')}/api/flow_runs/{flow_run_id}"
    headers = api_headers(page, base_url)
    deadline = time.monotonic() + timeout_s
    while True:
        run: dict[str, Any] = page.request.get(api, headers=headers).json()
        details: dict[str, Any] = (run.get("state") or {}).get("state_details") or {}
        keyset: dict[str, str] = details.get("run_input_keyset") or {}
        key = keyset.get("schema")
        if run.get("state_type") != "PAUSED" or key is None:
            raise UIError(f"flow run {flow_run_id} is {run.get('state_name')}, not awaiting input")
        if page.request.get(f"{api}/input/{key}", headers=headers).ok:
            return key
        if time.monotonic() > deadline:
            raise UIError(f"flow run {flow_run_id}: no input schema {key!r} after {timeout_s} s")
        page.wait_for_timeout(250)


@contextmanager
def tall_viewport(page: Page, height: int = TALL_VIEWPORT_HEIGHT) -> Iterator[None]:
    """Temporarily make the viewport tall, so a dialog that scrolls fits one screenshot."""
    before = page.viewport_size
    width = before["width"] if before else VIEWPORT["width"]
    page.set_viewport_size({"width": width, "height": height})
    try:
        yield
    finally:
        page.set_viewport_size(before or VIEWPORT)


def resume_paused_run(
    page: Page,
    base_url: str,
    flow_run_id: str,
    values: Mapping[str, str],
    *,
    screenshot_path: Path | str | None = None,
) -> None:
    """Open a paused run, fill the RunInput form of "Resume" with ``values``, submit.

    The run must be Paused already (``wait_for_state(..., "PAUSED")`` first).

    ``values`` maps the RunInput's field names to text (enum fields: the option's text).
    The screenshot is of the dialog alone, taken in a tall viewport so it fits whole.
    Raises UIError unless the server accepts the resume (the input matches the schema).
    """
    wait_for_input_form(page, base_url, flow_run_id)
    open_flow_run(page, base_url, flow_run_id)
    # "Paused", or "Suspended" for a deployment's run that released its process
    expect_state_badge(page, flow_run_state(page, base_url, flow_run_id).name)
    page.get_by_role("button", name="Open menu").first.click()
    page.get_by_role("menuitem", name="Resume").click()
    dialog = page.get_by_role("dialog", name="Resume Flow Run")
    dialog.wait_for()
    with tall_viewport(page):
        fill_form(dialog, values)
        if screenshot_path is not None:
            Path(screenshot_path).parent.mkdir(parents=True, exist_ok=True)
            dialog.screenshot(path=str(screenshot_path))
        with page.expect_response(
            lambda r: r.request.method == "POST" and r.url.endswith("/resume")
        ) as resumed:
            dialog.get_by_role("button", name="Resume", exact=True).click()
    response = resumed.value
    answer: dict[str, Any] = response.json() if response.ok else {}
    if response.status != 201 or answer.get("status") != "ACCEPT":
        raise UIError(
            f"resuming flow run {flow_run_id}: HTTP {response.status} {response.text()[:500]}"
        )
    dialog.wait_for(state="hidden")


def approve_paused_run(
    page: Page,
    base_url: str,
    flow_run_id: str,
    reviewer: str,
    note: str = "",
    *,
    decision: str = "approve",
    screenshot_path: Path | str | None = None,
) -> None:
    """Decide on a paused subject request (``ApprovalInput``): decision, reviewer, note."""
    values = {"decision": decision, "reviewer": reviewer}
    if note:
        values["note"] = note
    resume_paused_run(page, base_url, flow_run_id, values, screenshot_path=screenshot_path)


# -- artifacts ---------------------------------------------------------------------------


def _settled(page: Page, timeout_s: float = 5.0) -> None:
    """Best effort: wait until no loading skeleton is shown (for tidy screenshots)."""
    with suppress(PlaywrightTimeoutError):
        page.locator('[data-slot="skeleton"]').first.wait_for(
            state="detached", timeout=timeout_s * 1000
        )


def open_artifacts(
    page: Page,
    base_url: str,
    flow_run_id: str,
    *,
    screenshot_path: Path | str | None = None,
) -> list[str]:
    """Open the run's Artifacts tab; returns the artifact keys shown on the cards."""
    open_flow_run(page, base_url, flow_run_id, tab="Artifacts")
    cards = page.locator('a[href*="/artifacts/artifact/"]')
    cards.first.wait_for()
    _settled(page)
    screenshot(page, screenshot_path)
    return [card.get_by_role("heading").first.inner_text().strip() for card in cards.all()]


def open_artifact(
    page: Page, key: str | re.Pattern[str], *, screenshot_path: Path | str | None = None
) -> str:
    """From the Artifacts tab, open the artifact whose key matches; returns its page text."""
    pattern = key if isinstance(key, re.Pattern) else re.compile(re.escape(key))
    card = page.locator('a[href*="/artifacts/artifact/"]').filter(
        has=page.get_by_role("heading", name=pattern)
    )
    card.first.click()
    page.wait_for_url(re.compile(r"/artifacts/artifact/[0-9a-f-]{36}"))
    page.get_by_role("tab", name="Artifact", exact=True).wait_for()
    _settled(page)
    screenshot(page, screenshot_path)
    return page.locator("body").inner_text()
