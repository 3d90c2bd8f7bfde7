//! A real browser for the console's tests: headless Chromium driven by
//! chromedriver over the W3C WebDriver protocol, both from Debian
//! (`chromium`, `chromium-driver`; scripts/browser.sh installs them).
//!
//! WebDriver is a handful of JSON calls over HTTP, spoken here with the
//! suite's reqwest rather than through a WebDriver crate and the second
//! HTTP client stack it would add to every build. A test that cannot start
//! the browser fails with the reason; it is never skipped.
//!
//! Every wait polls the page until a condition holds, up to [`WAIT`]: the
//! tests run beside the rest of the suite on two cores, so nothing here
//! sleeps and hopes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// How long a condition may take to hold on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver (and the Chromium it starts), stopped with their process
/// group when dropped, even if the test panicked.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group holds chromedriver and the browser it launched.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    _driver: Driver,
    _profile: tempfile::TempDir,
}

/// The program to run: `$VAR` if set, else `default`.
fn program(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session
    /// with a 1280×900 window. Panics with the reason if either cannot
    /// start.
    pub async fn start() -> Browser {
        use std::os::unix::process::CommandExt;
        let driver_program = program("CHROMEDRIVER", "chromedriver");
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        let port = free_port();
        let child = Command::new(&driver_program)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {driver_program} (run scripts/browser.sh to install chromium-driver): {e}")
            });
        let mut driver = Driver { child };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = driver.child.try_wait().expect("try_wait") {
                panic!("{driver_program} exited at start-up: {status}");
            }
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r.json::<Value>().await.ok(),
                Err(_) => None,
            };
            if ready.is_some_and(|v| v["value"]["ready"] == true) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{driver_program} did not become ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().expect("profile dir");
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,900",
                    "--no-first-run", "--disable-extensions",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let answer: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("new session answer");
        let id = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("Chromium did not start ({chromium}): {answer}"));
        let session = format!("{base}/session/{id}");
        Browser {
            http,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    /// A WebDriver command; its `value`. Panics on a WebDriver error.
    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body)
            .await
            .unwrap_or_else(|error| panic!("WebDriver {path}: {error}"))
    }

    /// A WebDriver command; its `value`, or the WebDriver error's.
    async fn try_command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Value> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        } else if method == reqwest::Method::POST {
            request = request.json(&json!({}));
        }
        let answer: Value = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path} answer: {e}"));
        if answer["value"]["error"].is_string() {
            return Err(answer["value"].clone());
        }
        Ok(answer["value"].clone())
    }

    /// Opens `url` and waits for its load.
    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The text of the first element matching `css`, `None` if there is none.
    pub async fn text(&self, css: &str) -> Option<String> {
        let value = self
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                json!([css]),
            )
            .await;
        value.as_str().map(str::to_owned)
    }

    /// Whether the first element matching `css` is rendered (present and
    /// taking up room on the page).
    pub async fn is_shown(&self, css: &str) -> bool {
        self.execute(
            "const e = document.querySelector(arguments[0]); return !!e && e.getClientRects().length > 0;",
            json!([css]),
        )
        .await
            == Value::Bool(true)
    }

    /// Waits until the text of `css` satisfies `check`; returns it.
    pub async fn wait_until(
        &self,
        css: &str,
        what: &str,
        check: impl Fn(&str) -> bool,
        within: Duration,
    ) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(text) = self.text(css).await
                && check(&text)
            {
                return text;
            }
            if Instant::now() > deadline {
                let page = self.text("body").await.unwrap_or_default();
                panic!("{css} did not show {what} within {within:?}; the page says:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `css` exists and its text contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        self.wait_until(css, needle, |t| t.contains(needle), WAIT)
            .await
    }

    /// Waits until `css` exists; its WebDriver reference.
    pub async fn find(&self, css: &str) -> Value {
        self.wait_until(css, "anything", |_| true, WAIT).await;
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        found[ELEMENT].clone()
    }

    /// Clicks `css` as a user would (it must be visible and enabled).
    /// The console re-renders as its data refreshes, so an element found
    /// just before a render may be gone by the click: it is found again.
    pub async fn click(&self, css: &str) {
        for attempt in 0.. {
            let element = self.find(css).await;
            let id = element.as_str().expect("element id");
            let path = format!("/element/{id}/click");
            match self.try_command(reqwest::Method::POST, &path, None).await {
                Ok(_) => return,
                Err(e) if e["error"] == "stale element reference" && attempt < 5 => {}
                Err(e) => panic!("WebDriver click on {css}: {e}"),
            }
        }
    }

    /// Clears `css` and types `text` into it, key by key.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        let id = element.as_str().expect("element id");
        self.command(reqwest::Method::POST, &format!("/element/{id}/clear"), None)
            .await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Chooses `file` in the file input `css`.
    pub async fn choose_file(&self, css: &str, file: &Path) {
        let element = self.find(css).await;
        let id = element.as_str().expect("element id");
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": file.display().to_string() })),
        )
        .await;
    }

    /// Resizes the window (the phone layout is 390 px wide).
    pub async fn resize(&self, width: u32, height: u32) {
        self.command(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Saves a screenshot of the whole page (the window stretched to the
    /// page's height, up to 3,000 px) to docs/console/`name`.png.
    pub async fn screenshot(&self, name: &str) {
        let window = self
            .command(reqwest::Method::GET, "/window/rect", None)
            .await;
        let width = window["width"].as_u64().expect("window width") as u32;
        let height = window["height"].as_u64().expect("window height") as u32;
        let page = self
            .execute(
                "return document.documentElement.scrollHeight + window.outerHeight - window.innerHeight;",
                json!([]),
            )
            .await
            .as_u64()
            .unwrap_or(0)
            .min(3000) as u32;
        let stretched = page > height;
        if stretched {
            self.resize(width, page).await;
        }
        let png = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        if stretched {
            self.resize(width, height).await;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 screenshot"))
            .expect("screenshot is base64");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("docs/console");
        std::fs::write(dir.join(format!("{name}.png")), bytes).expect("write screenshot");
    }

    /// Ends the session (the browser closes).
    pub async fn quit(self) {
        let _ = self
            .http
            .delete(self.session.clone())
            .send()
            .await
            .map(|_| ());
    }
}

/// Where screenshots go: docs/console/ at the repository's root.
fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/console")
}
