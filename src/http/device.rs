//! A client's `User-Agent` put the way a person names their devices
//! ("Firefox on Windows", "Safari on iPhone"), for the account page's list
//! of sessions and the new sign-in notice. The raw string, a hundred
//! characters of `Mozilla/5.0 (…) AppleWebKit/…`, does not tell someone
//! which row is their phone, and that is the row they must recognise to
//! sign a stranger out. The audit log keeps the raw string.

/// Browsers by the token that tells them apart; the order matters, as
/// Edge and Opera also say Chrome, and Chrome also says Safari.
const BROWSERS: &[(&str, &str)] = &[
    ("Edg/", "Edge"),
    ("EdgA/", "Edge"),
    ("EdgiOS/", "Edge"),
    ("OPR/", "Opera"),
    ("SamsungBrowser/", "Samsung Internet"),
    ("Firefox/", "Firefox"),
    ("FxiOS/", "Firefox"),
    ("CriOS/", "Chrome"),
    ("Chromium/", "Chromium"),
    ("Chrome/", "Chrome"),
    ("Version/", "Safari"),
];

/// Systems by their token; iPhone and iPad before Mac OS X, which they
/// also say, and Android and ChromeOS before Linux.
const SYSTEMS: &[(&str, &str)] = &[
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("CrOS", "ChromeOS"),
    ("Windows", "Windows"),
    ("Macintosh", "macOS"),
    ("Mac OS X", "macOS"),
    ("Linux", "Linux"),
];

/// "Browser on System" for a browser; the first product's name for
/// anything else (`curl/8.5.0` → "curl"); the string itself when it has
/// neither shape.
pub fn describe(user_agent: &str) -> String {
    let ua = user_agent.trim();
    let system = SYSTEMS.iter().find(|(token, _)| ua.contains(token)).map(|(_, name)| *name);
    let browser = BROWSERS.iter().find(|(token, _)| ua.contains(token)).map(|(_, name)| *name);
    match (ua.starts_with("Mozilla/").then_some(browser).flatten(), system) {
        (Some(browser), Some(system)) => format!("{browser} on {system}"),
        (Some(browser), None) => browser.to_string(),
        (None, _) if ua.starts_with("Mozilla/") => {
            system.map_or_else(|| ua.to_string(), |s| format!("A browser on {s}"))
        }
        (None, _) => match ua.split_once('/') {
            Some((product, _)) if !product.is_empty() && !product.contains(' ') => product.to_string(),
            _ => ua.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn common_clients_get_the_names_people_use() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.80",
                "Edge on Windows",
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 HeadlessChrome/156.0.0.0 Safari/537.36",
                "Chrome on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:126.0) Gecko/20100101 Firefox/126.0",
                "Firefox on Windows",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
                 Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like \
                 Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
                "Chrome on iPhone",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4_1) AppleWebKit/605.1.15 (KHTML, like Gecko) \
                 Version/17.4.1 Safari/605.1.15",
                "Safari on macOS",
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) \
                 SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
                "Samsung Internet on Android",
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/124.0.0.0 Safari/537.36",
                "Chrome on ChromeOS",
            ),
            ("Mozilla/5.0 (X11; Linux x86_64) SomethingNew", "A browser on Linux"),
            ("curl/8.5.0", "curl"),
            ("python-requests/2.31.0", "python-requests"),
            ("phone-app/1.0", "phone-app"),
            ("a thing of its own", "a thing of its own"),
        ];
        for (ua, want) in cases {
            assert_eq!(describe(ua), want, "{ua}");
        }
    }
}
