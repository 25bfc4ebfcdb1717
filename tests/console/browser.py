"""Drives a node's web console in headless Chromium (WebDriver, selenium).

    python3 tests/console/browser.py CONSOLE_URL MODULE NAME INPUT EXPECTED SHOTS_DIR

On a node with a ledger and two peers: reads the Node page (the node, its
two peers, the network picture); uploads MODULE on the Deploy page as NAME
on two hosts (the verdict first, then the deploy and where it landed);
opens the Ledger page and, in another tab, calls NAME with INPUT on the
Invoke page (from the keyboard too) and checks the output is EXPECTED,
then finds NAME on the Functions page with its two providers and a drawn
latency chart; back on the Ledger tab, waits without reloading it for a
new finalized block holding those calls' settlement (server-sent events);
opens that block and sees a receipt paid; runs the audit and waits for
its clean result; opens the Agents page. Screenshots of each
page at desktop and phone widths go to SHOTS_DIR. Prints the node's peer
id. Exit 0: all held; 1: a check failed (what, on stderr); 77: no browser.
"""

import os
import sys

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("skipped: Python's selenium is not installed (scripts/setup installs it)", file=sys.stderr)
    sys.exit(77)


def browser():
    chromium = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if os.path.exists(p)), None)
    driver = next((p for p in ("/usr/bin/chromedriver",) if os.path.exists(p)), None)
    if chromium is None or driver is None:
        print("skipped: no chromium and chromium-driver (scripts/setup installs them)", file=sys.stderr)
        sys.exit(77)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except WebDriverException as e:
        print(f"skipped: the browser does not start: {e.msg}", file=sys.stderr)
        sys.exit(77)


def check(what, ok):
    if not ok:
        print(f"console check failed: {what}", file=sys.stderr)
        sys.exit(1)


def wait(d, what, cond, secs=60):
    """Waits for cond(d) to be truthy (the page is not reloaded) and returns it."""
    try:
        return WebDriverWait(d, secs, poll_frequency=0.2).until(lambda d: cond(d))
    except TimeoutException:
        check(f"{what} within {secs} s; the page says: {d.find_element(By.TAG_NAME, 'main').text!r}", False)


def follow(d, how, what):
    """Clicks element (how, what) and waits for the page it leads to: a
    click returns before the browser has loaded the next page."""
    d.execute_script("window.__before_click = true")
    d.find_element(how, what).click()
    wait(d, f"the page after {what}", lambda d: d.execute_script(
        "return window.__before_click !== true && document.readyState === 'complete'"))


def texts(d, css):
    """The text of each element matching css, read in one script: a live
    part replaced between two reads cannot leave a stale element."""
    return d.execute_script(
        "return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText)", css)


def shots(d, shots_dir, name):
    for label, (w, h) in (("desktop", (1280, 900)), ("phone", (390, 844))):
        d.set_window_size(w, h)
        d.save_screenshot(os.path.join(shots_dir, f"{name}-{label}.png"))
        # At phone width nothing spills sideways but the tables' own scroll.
        width = d.execute_script("return document.documentElement.scrollWidth")
        check(f"{name} fits {w} px (is {width})", width <= w)
    d.set_window_size(1280, 900)


def main():
    url, module, function, given, expected, shots_dir = sys.argv[1:7]
    os.makedirs(shots_dir, exist_ok=True)
    d = browser()
    try:
        d.get(url + "/")
        check("the Node page's title", d.title.startswith("Node"))
        peer = d.find_element(By.ID, "peer-id").text
        check("a peer id on the Node page", peer.startswith("12D3KooW"))
        rows = texts(d, "#peers tbody tr")
        check(f"two peers: {rows!r}", len(rows) == 2)
        check("the network picture has this node and its two peers",
              len(d.find_elements(By.CSS_SELECTOR, "#network circle")) == 3)
        check("the network picture links this node to both peers directly",
              len(d.find_elements(By.CSS_SELECTOR, '#network line[data-kind="direct"]')) == 2)
        shots(d, shots_dir, "node")

        # Keyboard only: the first Tab reaches a link past the header,
        # then the pages in order; Enter on Deploy opens it.
        d.find_element(By.TAG_NAME, "body").send_keys("\t")
        focused = [d.switch_to.active_element.text]
        for _ in range(3):
            d.switch_to.active_element.send_keys("\t")
            focused.append(d.switch_to.active_element.text)
        check(f"tab order {focused}", focused == ["Skip to the page", "Node", "Functions", "Deploy"])
        d.execute_script("window.__before_click = true")
        d.switch_to.active_element.send_keys("\ue007")  # Enter
        wait(d, "the page Enter on Deploy opens", lambda d: d.execute_script(
            "return window.__before_click !== true && document.readyState === 'complete'"))

        # Deploy: the verdict first, then where it landed.
        check("the Deploy page", d.title.startswith("Deploy"))
        d.find_element(By.ID, "module").send_keys(module)
        d.find_element(By.ID, "name").send_keys(function)
        replicas = d.find_element(By.ID, "replicas")
        replicas.clear()
        replicas.send_keys("2")
        follow(d, By.ID, "inspect")
        verdict = d.find_element(By.ID, "verdict").text
        check(f"the verdict {verdict!r}", verdict.startswith("Runnable"))
        check("its imports listed", "wasi_snapshot_preview1::fd_write" in d.find_element(By.TAG_NAME, "main").text)
        follow(d, By.ID, "deploy")
        errors = texts(d, "#error")
        check(f"deployed, not {errors}", not errors)
        hosts = d.find_element(By.ID, "hosts").text.split()
        check(f"two hosts, this node one: {hosts}", len(hosts) == 2 and peer in hosts)
        shots(d, shots_dir, "deploy")

        try_link = d.find_element(By.ID, "try").get_attribute("href")

        # The Ledger page stays open in this tab while calls are made in
        # another: what they settle must appear here without a reload
        # (server-sent events).
        follow(d, By.LINK_TEXT, "Ledger")
        check("the Ledger page", d.title.startswith("Ledger"))
        start_height = int(d.find_element(By.ID, "height").text)
        d.execute_script("window.notReloaded = true")
        ledger_tab = d.current_window_handle

        # Invoke, from the link the deploy page gives.
        d.switch_to.new_window("tab")
        d.get(try_link)
        check("the Invoke page", d.title.startswith("Invoke"))
        check("the function filled in", d.find_element(By.ID, "function").get_attribute("value") == function)
        d.find_element(By.ID, "input").send_keys(given)
        for _ in range(3):
            follow(d, By.ID, "call")
            errors = texts(d, "#error")
            check(f"the call answered, not {errors}", not errors)
            out = d.find_element(By.ID, "output").text
            check(f"the output {out!r} is {expected!r}", out == expected)
        check("the executor named", d.find_element(By.ID, "executor").text.startswith("12D3KooW"))
        check("fuel shown", int(d.find_element(By.ID, "fuel").text) > 0)
        # Keyboard only: the form's fields and button take focus in order.
        d.find_element(By.ID, "function").click()
        active = [d.switch_to.active_element.get_attribute("id")]
        for _ in range(3):
            d.switch_to.active_element.send_keys("\t")
            active.append(d.switch_to.active_element.get_attribute("id"))
        check(f"tab order {active}", active == ["function", "input", "replicas", "call"])
        # Enter on the focused button calls, as a click does.
        d.execute_script("document.getElementById('output').id = 'output-before'")
        d.switch_to.active_element.send_keys("\ue007")
        wait(d, "the call made by Enter", lambda d: texts(d, "#output") == [expected])
        shots(d, shots_dir, "invoke")

        # Functions: the function with both providers, its calls, a chart.
        follow(d, By.LINK_TEXT, "Functions")
        rows = texts(d, "#functions tbody tr")
        row = next((r for r in rows if r.startswith(function)), None)
        check(f"{function} in the Functions table: {rows!r}", row is not None)
        check(f"two providers and 4 calls ok: {row!r}", row.count("12D3KooW") == 2 and "4 / 0" in row)
        dots = d.find_elements(By.CSS_SELECTOR, f"figure.latency[data-function='{function}'] svg circle")
        check(f"a latency chart with its p50 and p99 points drawn ({len(dots)})", len(dots) >= 2)
        calls = texts(d, f"table.calls[data-function='{function}'] tbody tr")
        check(f"the four calls listed with their host and outcome: {calls!r}",
              len(calls) >= 4 and all("ok" in c.split("\t") and "12D3KooW" in c for c in calls))
        shots(d, shots_dir, "functions")
        d.close()

        # Back on the Ledger tab: a block above the first height, with a
        # settlement, arrived while it was open.
        d.switch_to.window(ledger_tab)

        def settled_block(d):
            # Read in one script: the table is replaced every second.
            rows = d.execute_script("""
                return Array.from(document.querySelectorAll('#blocks tbody tr')).map(tr => {
                    const cells = Array.from(tr.querySelectorAll('td')).map(td => td.innerText);
                    const a = tr.querySelector('a');
                    return [cells, a ? a.href : null];
                })""")
            for cells, href in rows:
                if len(cells) >= 4 and int(cells[0]) > start_height and cells[3] not in ("", "0"):
                    return href
            return None

        block = wait(d, f"a finalized block above height {start_height} with a settlement", settled_block)
        check("the page was kept live, not reloaded", d.execute_script("return window.notReloaded === true"))
        shots(d, shots_dir, "ledger")
        d.get(block)
        check("the block page", d.title.startswith("Block"))
        status = texts(d, ".settlement td.ok")
        check(f"a paid receipt in the block: {status}", "paid" in status)
        shots(d, shots_dir, "block")

        # Audit: started by the button, back on the Ledger page, where its
        # progress and then its result show (a short chain audits at once).
        d.get(url + "/console/ledger")
        follow(d, By.ID, "audit")
        wait(d, "the Ledger page again", lambda d: d.current_url.endswith("/console/ledger#ledger-audit"))
        result = wait(d, "the audit's result", lambda d: next(iter(texts(d, "#audit-result")), None))
        check(f"the audit is clean: {result!r}", result.startswith("Clean"))

        follow(d, By.LINK_TEXT, "Agents")
        check("the Agents page", d.title.startswith("Agents"))
        shots(d, shots_dir, "agents")

        # Dark mode: the system's preference turns the page dark, text light.
        d.execute_cdp_cmd("Emulation.setEmulatedMedia",
                          {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
        d.get(url + "/console/functions")

        def luminance(css):
            rgb = [int(x) for x in css[css.index("(") + 1:css.index(")")].split(",")[:3]]
            return sum(rgb) / 3

        body = d.find_element(By.TAG_NAME, "body")
        bg, fg = luminance(body.value_of_css_property("background-color")), luminance(body.value_of_css_property("color"))
        check(f"dark mode: background {bg:.0f} dark, text {fg:.0f} light", bg < 60 and fg > 180)
        d.save_screenshot(os.path.join(shots_dir, "functions-dark.png"))
        print(peer)
    finally:
        d.quit()


main()
