"""Drives a node's web console in headless Chromium (WebDriver, selenium).

    python3 tests/console/browser.py CONSOLE_URL FUNCTION INPUT EXPECTED SHOTS_DIR

Opens the Node page (it names the node and its two peers), calls FUNCTION
with INPUT on the Invoke page and checks the output is EXPECTED and the
form works from the keyboard, then finds FUNCTION on the Node page with its
provider and that call; screenshots at desktop and phone widths. Exit 0:
all held; 1: a check failed (what, on stderr); 77: no browser here.
"""

import os
import sys

try:
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
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


def shots(d, shots_dir, name):
    for label, (w, h) in (("desktop", (1280, 900)), ("phone", (390, 844))):
        d.set_window_size(w, h)
        d.save_screenshot(os.path.join(shots_dir, f"{name}-{label}.png"))
        # At phone width nothing spills sideways but the tables' own scroll.
        width = d.execute_script("return document.documentElement.scrollWidth")
        check(f"{name} fits {w} px (is {width})", width <= w)
    d.set_window_size(1280, 900)


def main():
    url, function, given, expected, shots_dir = sys.argv[1:6]
    os.makedirs(shots_dir, exist_ok=True)
    d = browser()
    try:
        d.get(url + "/")
        check("the Node page's title", d.title.startswith("Node"))
        peer = d.find_element(By.ID, "peer-id").text
        check("a peer id on the Node page", peer.startswith("12D3KooW"))
        peers = d.find_element(By.ID, "peers").text
        check(f"two peers, direct: {peers!r}", peers.count("direct") == 2)

        d.find_element(By.LINK_TEXT, "Invoke").click()
        check("the Invoke page", d.title.startswith("Invoke"))
        d.find_element(By.ID, "function").send_keys(function)
        d.find_element(By.ID, "input").send_keys(given)
        d.find_element(By.ID, "call").click()
        errors = [e.text for e in d.find_elements(By.ID, "error")]
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
        shots(d, shots_dir, "invoke")

        # Back on the Node page: the function, by its name, with a provider
        # and the call that entered here.
        d.find_element(By.LINK_TEXT, "Node").click()
        rows = [r.text for r in d.find_elements(By.CSS_SELECTOR, "#functions tbody tr")]
        row = next((r for r in rows if r.startswith(function)), None)
        check(f"{function} in the Functions table: {rows!r}", row is not None)
        check(f"one provider and 1 call ok: {row!r}", "12D3KooW" in row and row.endswith("1 / 0"))
        shots(d, shots_dir, "node")
        print(peer)
    finally:
        d.quit()


main()
