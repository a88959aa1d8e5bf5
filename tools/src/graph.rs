//! `drti report --svg`: the hot call graph of an agent dump as a self-contained SVG.
//!
//! Nodes are functions (keyed by module and symbol), one arrow per caller → callee pair
//! summed over call sites, arrow width ∝ log(calls), colour by edge state. Functions are
//! laid out in columns by call depth (longest path from a root, back edges ignored) and in
//! one horizontal band per module. Everything is deterministic: the same dump gives the same
//! bytes. Reads the typed dump of `bitcode_embed::dump`.

use bitcode_embed::dump::Dump;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// Edge states in legend order, with their colours.
pub const STATES: &[(&str, &str)] = &[
    ("cold", "#9e9e9e"),
    ("hot", "#f57c00"),
    ("inlined", "#2e7d32"),
    ("rejected", "#d32f2f"),
    ("invalidated", "#7b1fa2"),
];

/// Colour of an unknown state.
const UNKNOWN_COLOUR: &str = "#455a64";

/// At most this many edges are drawn (the hottest); the rest are counted in a note.
pub const MAX_EDGES: usize = 80;

fn colour(state: &str) -> &'static str {
    STATES.iter().find(|(s, _)| *s == state).map(|(_, c)| *c).unwrap_or(UNKNOWN_COLOUR)
}

/// When one caller → callee pair has sites in different states, the pair shows the one a
/// reader most needs to see: problems first, then progress.
fn state_rank(state: &str) -> u8 {
    match state {
        "invalidated" => 5,
        "rejected" => 4,
        "inlined" => 3,
        "hot" => 2,
        "cold" => 1,
        _ => 0,
    }
}

/// Escapes text for XML content and attribute values; characters XML 1.0 forbids become U+FFFD.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Demangling (a small subset of the Itanium C++ ABI, enough for labels)
// ---------------------------------------------------------------------------------------

/// A readable label for a symbol: `_ZNK6Square4areaEv` → `Square::area`,
/// `_Z10total_areaPKP5Shapem` → `total_area`. Parameters are dropped; template arguments
/// become `<…>`. Anything not understood is returned unchanged.
pub fn demangle(sym: &str) -> String {
    // Clone suffixes (`.cold`, `.llvm.1234`) are kept, c++filt style.
    let (base, suffix) = match sym.find('.') {
        Some(i) if i > 0 => (&sym[..i], Some(&sym[i..])),
        _ => (sym, None),
    };
    let Some(rest) = base.strip_prefix("_Z") else { return sym.to_owned() };
    let mut p = Demangler { s: rest.as_bytes(), i: 0 };
    match p.name() {
        Some(name) if !name.is_empty() => match suffix {
            Some(sfx) => format!("{name} [clone {sfx}]"),
            None => name,
        },
        _ => sym.to_owned(),
    }
}

struct Demangler<'a> {
    s: &'a [u8],
    i: usize,
}

impl Demangler<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, prefix: &str) -> bool {
        if self.s[self.i..].starts_with(prefix.as_bytes()) {
            self.i += prefix.len();
            true
        } else {
            false
        }
    }

    /// `<name>` of an encoding.
    fn name(&mut self) -> Option<String> {
        if self.eat("N") {
            return self.nested();
        }
        let mut parts = Vec::new();
        if self.eat("St") {
            parts.push("std".to_owned());
        }
        self.eat("L"); // internal linkage
        let (part, _) = self.unqualified(None)?;
        parts.push(part);
        let mut out = parts.join("::");
        if self.peek() == Some(b'I') {
            self.template_args()?;
            out.push_str("<…>");
        }
        Some(out)
    }

    /// `N [qualifiers] <prefix> <unqualified-name> E`.
    fn nested(&mut self) -> Option<String> {
        while matches!(self.peek(), Some(b'r' | b'V' | b'K' | b'R' | b'O')) {
            self.i += 1;
        }
        let mut parts: Vec<String> = Vec::new();
        let mut last_class: Option<String> = None;
        loop {
            match self.peek()? {
                b'E' => {
                    self.i += 1;
                    break;
                }
                b'I' => {
                    self.template_args()?;
                    parts.last_mut()?.push_str("<…>");
                }
                b'S' => {
                    if self.eat("St") {
                        parts.push("std".into());
                    } else if self.eat("Sa") {
                        parts.push("std::allocator".into());
                    } else if self.eat("Sb") {
                        parts.push("std::basic_string".into());
                    } else if self.eat("Ss") {
                        parts.push("std::string".into());
                    } else {
                        return None; // other substitutions: not worth it for a label
                    }
                }
                _ => {
                    let (part, class) = self.unqualified(last_class.as_deref())?;
                    if let Some(c) = class {
                        last_class = Some(c);
                    }
                    parts.push(part);
                }
            }
        }
        if parts.is_empty() {
            return None;
        }
        Some(parts.join("::"))
    }

    /// A source name, constructor, destructor or operator. Returns the text and, for a
    /// source name, the name itself (what a later constructor/destructor refers to).
    fn unqualified(&mut self, class: Option<&str>) -> Option<(String, Option<String>)> {
        let c = self.peek()?;
        if c.is_ascii_digit() {
            let mut len = 0usize;
            while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
                len = len.checked_mul(10)?.checked_add((d - b'0') as usize)?;
                self.i += 1;
            }
            let end = self.i.checked_add(len)?;
            let id = std::str::from_utf8(self.s.get(self.i..end)?).ok()?.to_owned();
            self.i = end;
            let shown = if id.starts_with("_GLOBAL__N") { "(anonymous namespace)".to_owned() } else { id.clone() };
            return Some((shown, Some(id)));
        }
        if c == b'C' || c == b'D' {
            let kind = *self.s.get(self.i + 1)?;
            let class = class.unwrap_or("?");
            let short = class.rsplit("::").next().unwrap_or(class).to_owned();
            if c == b'C' && matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5') {
                self.i += 2;
                return Some((short, None));
            }
            if c == b'C' && kind == b'I' {
                return None; // inheriting constructor: rare
            }
            if c == b'D' && matches!(kind, b'0' | b'1' | b'2' | b'4' | b'5') {
                self.i += 2;
                return Some((format!("~{short}"), None));
            }
        }
        const OPS: &[(&str, &str)] = &[
            ("nw", "new"), ("na", "new[]"), ("dl", "delete"), ("da", "delete[]"), ("ps", "+"), ("ng", "-"),
            ("ad", "&"), ("de", "*"), ("co", "~"), ("pl", "+"), ("mi", "-"), ("ml", "*"), ("dv", "/"),
            ("rm", "%"), ("an", "&"), ("or", "|"), ("eo", "^"), ("aS", "="), ("pL", "+="), ("mI", "-="),
            ("mL", "*="), ("dV", "/="), ("rM", "%="), ("aN", "&="), ("oR", "|="), ("eO", "^="), ("ls", "<<"),
            ("rs", ">>"), ("lS", "<<="), ("rS", ">>="), ("eq", "=="), ("ne", "!="), ("lt", "<"), ("gt", ">"),
            ("le", "<="), ("ge", ">="), ("ss", "<=>"), ("nt", "!"), ("aa", "&&"), ("oo", "||"), ("pp", "++"),
            ("mm", "--"), ("cm", ","), ("pm", "->*"), ("pt", "->"), ("cl", "()"), ("ix", "[]"),
        ];
        for (code, op) in OPS {
            if self.eat(code) {
                return Some((format!("operator{op}"), None));
            }
        }
        None
    }

    /// Skips `I <template-arg>+ E`. Tracks nesting of the constructs that end in `E` and
    /// skips source names and literals whole; gives up (None) on anything unexpected.
    fn template_args(&mut self) -> Option<()> {
        if !self.eat("I") {
            return None;
        }
        let mut depth = 1usize;
        while depth > 0 {
            let c = self.peek()?;
            match c {
                b'0'..=b'9' => {
                    self.unqualified(None)?;
                }
                b'I' | b'N' | b'X' | b'J' | b'Z' => {
                    depth += 1;
                    self.i += 1;
                }
                b'L' => {
                    // L <type> <value> E  |  L _Z <encoding> E: skip to the literal's E.
                    self.i += 1;
                    if self.eat("_Z") {
                        depth += 1;
                    } else {
                        while self.peek()? != b'E' {
                            self.i += 1;
                        }
                        self.i += 1;
                    }
                }
                b'E' => {
                    depth -= 1;
                    self.i += 1;
                }
                _ => self.i += 1,
            }
        }
        Some(())
    }
}

// ---------------------------------------------------------------------------------------
// The graph
// ---------------------------------------------------------------------------------------

/// A function: (module path, symbol).
type NodeKey = (String, String);

struct Edge {
    from: usize,
    to: usize,
    calls: u64,
    state: String,
    sites: BTreeMap<String, (u64, String)>,
}

struct Node {
    module: usize,
    symbol: String,
    label: String,
    compiled: Option<String>,
    layer: usize,
    x: f64,
    y: f64,
    w: f64,
}

/// A text the dump may leave empty (an older dump, an unknown executable): `?` then.
fn known_or(s: &str) -> String {
    if s.is_empty() { "?".into() } else { s.to_owned() }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().filter(|s| !s.is_empty()).unwrap_or(path)
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

const FONT: &str = "DejaVu Sans, Verdana, Arial, sans-serif";
const CHAR_W: f64 = 7.4; // width of one 12 px character, generously
const NODE_H: f64 = 40.0;
const NODE_GAP: f64 = 34.0;
const COL_GAP: f64 = 190.0;
const BAND_PAD: f64 = 18.0;
const BAND_HEAD: f64 = 26.0;
const BAND_GAP: f64 = 26.0;
const MARGIN: f64 = 20.0;
const PORT_PAD: f64 = 6.0;

fn text_w(s: &str, char_w: f64) -> f64 {
    s.chars().count() as f64 * char_w
}

/// Renders the call graph of `dump` as an SVG document.
pub fn render_svg(dump: &Dump) -> String {
    // --- modules, in dump order, then any only named by edges
    let mut modules: Vec<String> = dump.modules.iter().map(|m| m.path.clone()).collect();
    let module_index = |modules: &mut Vec<String>, path: String| -> usize {
        match modules.iter().position(|m| *m == path) {
            Some(i) => i,
            None => {
                modules.push(path);
                modules.len() - 1
            }
        }
    };

    // --- edges aggregated per (caller, callee), hottest first, at most MAX_EDGES
    let mut all: Vec<_> = dump.edges.iter().collect();
    all.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.caller.cmp(&b.caller)).then_with(|| a.callee.cmp(&b.callee)));
    let mut keys: Vec<NodeKey> = Vec::new();
    let mut node_of: BTreeMap<NodeKey, usize> = BTreeMap::new();
    let mut edges: Vec<Edge> = Vec::new();
    let mut edge_of: BTreeMap<(usize, usize), usize> = BTreeMap::new();
    let mut node_modules: Vec<usize> = Vec::new();
    let mut omitted = 0usize;
    for e in &all {
        let caller: NodeKey = (known_or(&e.caller_module), e.caller.clone());
        let callee: NodeKey = (known_or(&e.callee_module), e.callee.clone());
        let known = node_of.contains_key(&caller) && node_of.contains_key(&callee) && edge_of.contains_key(&(node_of[&caller], node_of[&callee]));
        if !known && edges.len() >= MAX_EDGES {
            omitted += 1;
            continue;
        }
        let mut id = |k: NodeKey| -> usize {
            if let Some(&i) = node_of.get(&k) {
                return i;
            }
            let m = module_index(&mut modules, k.0.clone());
            keys.push(k.clone());
            node_modules.push(m);
            node_of.insert(k, keys.len() - 1);
            keys.len() - 1
        };
        let (from, to) = (id(caller), id(callee));
        let calls = e.calls;
        let state = e.state.clone();
        let idx = *edge_of.entry((from, to)).or_insert_with(|| {
            edges.push(Edge { from, to, calls: 0, state: state.clone(), sites: BTreeMap::new() });
            edges.len() - 1
        });
        let ed = &mut edges[idx];
        ed.calls = ed.calls.saturating_add(calls);
        if state_rank(&state) > state_rank(&ed.state) {
            ed.state = state.clone();
        }
        let site = ed.sites.entry(e.site.to_string()).or_insert((0, state.clone()));
        site.0 = site.0.saturating_add(calls);
    }

    // --- compiled functions (for node badges)
    let mut compiled: BTreeMap<String, String> = BTreeMap::new();
    for c in dump.compiles.iter().filter(|c| c.ok) {
        compiled.insert(c.function.clone(), format!("JIT {:.1} ms · {} B", c.ms, c.code_bytes));
    }

    let mut nodes: Vec<Node> = keys
        .iter()
        .zip(&node_modules)
        .map(|((_, sym), &m)| {
            let label = demangle(sym);
            Node { module: m, symbol: sym.clone(), label, compiled: compiled.get(sym).cloned(), layer: 0, x: 0.0, y: 0.0, w: 0.0 }
        })
        .collect();

    layer(&mut nodes, &edges);
    let (width, height) = place(&mut nodes, &edges, &modules);

    // --- drawing
    let mut svg = String::new();
    let legend_h = 64.0;
    let total_w = width.max(760.0);
    let total_h = height + legend_h;
    let _ = writeln!(svg, r#"<svg xmlns="http://www.w3.org/2000/svg" width="{tw:.0}" height="{th:.0}" viewBox="0 0 {tw:.0} {th:.0}" font-family="{FONT}" font-size="12">"#, tw = total_w, th = total_h);
    let _ = writeln!(svg, "<title>drti hot call graph: {}</title>", xml_escape(&known_or(&dump.exe)));
    let _ = writeln!(svg, r##"<rect x="0" y="0" width="{total_w:.0}" height="{total_h:.0}" fill="#ffffff"/>"##);

    // header and legend
    let _ = writeln!(
        svg,
        r##"<text x="{MARGIN}" y="24" font-size="15" font-weight="bold" fill="#212121">drti hot call graph — {}</text>"##,
        xml_escape(file_name(&known_or(&dump.exe)))
    );
    let mut info = format!("pid {} · threshold {} · {} functions · {} edges", dump.pid, dump.threshold, nodes.len(), edges.len());
    if omitted > 0 {
        let _ = write!(info, " (+{omitted} colder site edges not drawn)");
    }
    info.push_str(" · arrow width ∝ log(calls), label = calls");
    let _ = writeln!(svg, r##"<text x="{MARGIN}" y="42" fill="#616161">{}</text>"##, xml_escape(&info));
    let mut lx = MARGIN;
    for (state, col) in STATES {
        let _ = writeln!(svg, r#"<line x1="{lx}" y1="56" x2="{x2}" y2="56" stroke="{col}" stroke-width="4" stroke-linecap="round"/>"#, x2 = lx + 22.0);
        let _ = writeln!(svg, r##"<text x="{tx}" y="60" fill="#212121">{state}</text>"##, tx = lx + 28.0);
        lx += 28.0 + text_w(state, 6.8) + 20.0;
    }

    let _ = writeln!(svg, r#"<g transform="translate(0,{legend_h})">"#);
    // module bands (their names are drawn after the edges, so arrows do not hide them)
    let mut band_names = String::new();
    let mut placed: Vec<(f64, f64, f64, f64)> = Vec::new(); // edge labels avoid these
    for (m, band) in bands(&nodes, &modules).iter().enumerate() {
        let Some((y0, y1)) = band else { continue };
        let path = &modules[m];
        let _ = writeln!(
            svg,
            r##"<g><title>{}</title><rect x="{MARGIN}" y="{y0:.1}" width="{bw:.1}" height="{bh:.1}" rx="8" fill="#f5f7fa" stroke="#b0bec5" stroke-dasharray="4 3"/></g>"##,
            xml_escape(path),
            bw = total_w - 2.0 * MARGIN,
            bh = y1 - y0
        );
        let head_w = text_w(&format!("module {}  {}", file_name(path), path), CHAR_W) + 20.0;
        placed.push((MARGIN, *y0, head_w, 24.0));
        let _ = writeln!(band_names, r##"<g stroke="#f5f7fa" stroke-width="4" paint-order="stroke"><text x="{tx}" y="{ty:.1}" font-weight="bold" fill="#455a64">module {}</text><text x="{tx2:.1}" y="{ty:.1}" fill="#78909c">{}</text></g>"##, xml_escape(file_name(path)), xml_escape(path), tx = MARGIN + 10.0, tx2 = MARGIN + 10.0 + text_w(&format!("module {}", file_name(path)), 7.3) + 12.0, ty = y0 + 17.0);
    }

    // edges (under the nodes), coldest first so hot arrows are on top
    let max_calls = edges.iter().map(|e| e.calls).max().unwrap_or(1).max(1);
    let mut order: Vec<usize> = (0..edges.len()).collect();
    order.sort_by_key(|&i| (edges[i].calls, std::cmp::Reverse(i)));
    let mut labels = String::new();
    // ports: a node's outgoing arrows leave its right side in the order of their targets'
    // height, incoming arrows reach its left side in the order of their sources' height
    let mut out_port = vec![0.5; edges.len()];
    let mut in_port = vec![0.5; edges.len()];
    for v in 0..nodes.len() {
        for outgoing in [true, false] {
            let mut ids: Vec<usize> = (0..edges.len()).filter(|&i| edges[i].from != edges[i].to && if outgoing { edges[i].from == v } else { edges[i].to == v }).collect();
            let other = |i: usize| if outgoing { &nodes[edges[i].to] } else { &nodes[edges[i].from] };
            ids.sort_by(|&p, &q| other(p).y.total_cmp(&other(q).y).then(other(p).x.total_cmp(&other(q).x)).then(p.cmp(&q)));
            let n = ids.len() as f64;
            for (k, &i) in ids.iter().enumerate() {
                let slot = (k as f64 + 1.0) / (n + 1.0);
                if outgoing { out_port[i] = slot } else { in_port[i] = slot }
            }
        }
    }
    for i in order {
        let e = &edges[i];
        let w = 1.2 + 6.8 * ((1.0 + e.calls as f64).ln() / (1.0 + max_calls as f64).ln());
        let col = colour(&e.state);
        let (a, b) = (&nodes[e.from], &nodes[e.to]);
        let sites: Vec<String> = e.sites.iter().map(|(s, (c, st))| format!("site {s}: {} calls, {st}", thousands(*c))).collect();
        let title = format!("{} → {}\n{} calls, {}\n{}", a.symbol, b.symbol, thousands(e.calls), e.state, sites.join("\n"));
        let head = (2.4 * w).max(9.0);
        // path from the caller's right edge to the callee's left edge (or a loop)
        let (d, tip, dir, curve) = if e.from == e.to {
            let (x, y) = (a.x + a.w, a.y + NODE_H * 0.3);
            let (ex, ey) = (a.x + a.w, a.y + NODE_H * 0.75);
            (format!("M{x:.1},{y:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{ey:.1}", x + 60.0, y - 30.0, x + 60.0 + head, ey + 30.0, ex + head), (ex, ey), (-1.0, 0.0), None)
        } else {
            let (sx, sy) = (a.x + a.w, a.y + PORT_PAD + out_port[i] * (NODE_H - 2.0 * PORT_PAD));
            let (tx, ty) = (b.x, b.y + PORT_PAD + in_port[i] * (NODE_H - 2.0 * PORT_PAD));
            let ex = tx - head;
            let dx = ((ex - sx).abs() * 0.5).max(70.0);
            let (c1, c2) = ((sx + dx, sy), (ex - dx, ty));
            (format!("M{sx:.1},{sy:.1} C{:.1},{:.1} {:.1},{:.1} {ex:.1},{ty:.1}", c1.0, c1.1, c2.0, c2.1), (tx, ty), (1.0, 0.0), Some([(sx, sy), c1, c2, (ex, ty)]))
        };
        let (bx, by) = (tip.0 - dir.0 * head, tip.1 - dir.1 * head);
        let half = head * 0.55;
        let arrow = format!("{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}", tip.0, tip.1, bx - dir.1 * half, by + dir.0 * half, bx + dir.1 * half, by - dir.0 * half);
        let _ = writeln!(
            svg,
            r#"<g class="edge {st}"><title>{t}</title><path d="{d}" fill="none" stroke="{col}" stroke-width="{w:.2}" stroke-opacity="0.85"/><polygon points="{arrow}" fill="{col}"/></g>"#,
            st = xml_escape(&e.state),
            t = xml_escape(&title)
        );
        let label = if e.sites.len() > 1 { format!("{} ({} sites)", thousands(e.calls), e.sites.len()) } else { thousands(e.calls) };
        let lw = text_w(&label, 6.8) + 4.0;
        // a label sits above a flat arrow (higher the steeper it is) and beside a steep one;
        // returns (anchor x, baseline y, start-anchored?, bounding box)
        let spot = |p: (f64, f64), slope: f64| -> (f64, f64, bool, (f64, f64, f64, f64)) {
            if slope.abs() <= 1.0 {
                let base = p.1 - w / 2.0 - 4.0 - slope.abs() * lw / 2.0;
                (p.0, base, false, (p.0 - lw / 2.0, base - 11.0, lw, 14.0))
            } else {
                let x = p.0 + w / 2.0 + 4.0 + 14.0 / slope.abs();
                (x, p.1 + 4.0, true, (x, p.1 - 7.0, lw, 14.0))
            }
        };
        let (lx, ly, start, rect) = match curve {
            None => spot((a.x + a.w + 50.0, a.y + NODE_H * 0.5 + 7.0 + w / 2.0), 0.0),
            Some([p0, p1, p2, p3]) => {
                let at = |t: f64| {
                    let (q, r) = (bezier(t - 0.01, p0, p1, p2, p3), bezier(t + 0.01, p0, p1, p2, p3));
                    let slope = if (r.0 - q.0).abs() < 1e-9 { 1e9 } else { (r.1 - q.1) / (r.0 - q.0) };
                    spot(bezier(t, p0, p1, p2, p3), slope)
                };
                let free = |r: (f64, f64, f64, f64)| !nodes.iter().any(|n| overlaps(r, (n.x - 2.0, n.y - 2.0, n.w + 4.0, NODE_H + 4.0))) && !placed.iter().any(|q| overlaps(r, *q));
                [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78, 0.15, 0.85].iter().map(|&t| at(t)).find(|s| free(s.3)).unwrap_or_else(|| at(0.5))
            }
        };
        placed.push(rect);
        let _ = writeln!(
            labels,
            r##"<text x="{lx:.1}" y="{ly:.1}" text-anchor="{}" font-size="11" fill="{col}" stroke="#ffffff" stroke-width="3" paint-order="stroke" font-weight="bold">{}</text>"##,
            if start { "start" } else { "middle" },
            xml_escape(&label)
        );
    }

    // nodes
    for n in &nodes {
        let title = match &n.compiled {
            Some(c) => format!("{}\n{}\ncompiled: {c}", n.symbol, modules[n.module]),
            None => format!("{}\n{}", n.symbol, modules[n.module]),
        };
        let (stroke, sw) = if n.compiled.is_some() { (colour("inlined"), 2.5) } else { ("#546e7a", 1.2) };
        let _ = write!(
            svg,
            r##"<g class="node"><title>{}</title><rect x="{:.1}" y="{:.1}" width="{:.1}" height="{NODE_H}" rx="6" fill="#ffffff" stroke="{stroke}" stroke-width="{sw}"/>"##,
            xml_escape(&title),
            n.x,
            n.y,
            n.w
        );
        match &n.compiled {
            Some(c) => {
                let _ = write!(svg, r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#212121">{}</text><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="{}">{}</text>"##, n.x + n.w / 2.0, n.y + 17.0, xml_escape(&n.label), n.x + n.w / 2.0, n.y + 32.0, colour("inlined"), xml_escape(c));
            }
            None => {
                let _ = write!(svg, r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#212121">{}</text>"##, n.x + n.w / 2.0, n.y + NODE_H / 2.0 + 4.0, xml_escape(&n.label));
            }
        }
        svg.push_str("</g>\n");
    }
    // module names and edge labels last, on top of everything
    svg.push_str(&band_names);
    svg.push_str(&labels);
    if nodes.is_empty() {
        let _ = writeln!(svg, r##"<text x="{MARGIN}" y="30" fill="#616161">no edges in this dump</text>"##);
    }
    svg.push_str("</g>\n</svg>\n");
    svg
}

fn overlaps(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
    a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
}

fn bezier(t: f64, p0: (f64, f64), p1: (f64, f64), p2: (f64, f64), p3: (f64, f64)) -> (f64, f64) {
    let u = 1.0 - t;
    let (a, b, c, d) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
    (a * p0.0 + b * p1.0 + c * p2.0 + d * p3.0, a * p0.1 + b * p1.1 + c * p2.1 + d * p3.1)
}

/// Layers: longest path from the roots over the graph without its back edges (DFS order
/// from roots, deterministic), so callers sit left of their callees.
fn layer(nodes: &mut [Node], edges: &[Edge]) {
    let n = nodes.len();
    let mut out: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut indeg = vec![0usize; n];
    for e in edges {
        if e.from != e.to {
            out[e.from].push(e.to);
            indeg[e.to] += 1;
        }
    }
    for o in &mut out {
        o.sort_by(|a, b| (nodes[*a].module, &nodes[*a].symbol).cmp(&(nodes[*b].module, &nodes[*b].symbol)));
        o.dedup();
    }
    // DFS from roots (then from anything unvisited) to find back edges.
    let mut starts: Vec<usize> = (0..n).collect();
    starts.sort_by_key(|&i| (indeg[i] != 0, nodes[i].module, nodes[i].symbol.clone()));
    let mut colour = vec![0u8; n]; // 0 new, 1 on stack, 2 done
    let mut back: BTreeSet<(usize, usize)> = BTreeSet::new();
    let mut post: Vec<usize> = Vec::new();
    for s in starts {
        if colour[s] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(s, 0)];
        colour[s] = 1;
        while let Some(&mut (v, ref mut k)) = stack.last_mut() {
            if *k < out[v].len() {
                let w = out[v][*k];
                *k += 1;
                match colour[w] {
                    0 => {
                        colour[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        back.insert((v, w));
                    }
                    _ => {}
                }
            } else {
                colour[v] = 2;
                post.push(v);
                stack.pop();
            }
        }
    }
    // reverse post-order is a topological order of the forward edges
    let mut depth = vec![0usize; n];
    for &v in post.iter().rev() {
        for &w in &out[v] {
            if !back.contains(&(v, w)) {
                depth[w] = depth[w].max(depth[v] + 1);
            }
        }
    }
    for (node, d) in nodes.iter_mut().zip(depth) {
        node.layer = d;
    }
}

/// Places nodes: one column per layer, one band per module (in module order), nodes of a
/// (band, column) cell stacked, ordered by the mean row of their callers. Returns the size.
fn place(nodes: &mut [Node], edges: &[Edge], modules: &[String]) -> (f64, f64) {
    if nodes.is_empty() {
        return (760.0, 60.0);
    }
    let layers = nodes.iter().map(|n| n.layer).max().unwrap_or(0) + 1;
    for n in nodes.iter_mut() {
        let badge = n.compiled.as_deref().map(|c| text_w(c, CHAR_W * 0.85)).unwrap_or(0.0);
        n.w = (text_w(&n.label, CHAR_W).max(badge) + 24.0).max(90.0);
    }
    let mut col_w = vec![0.0f64; layers];
    for n in nodes.iter() {
        col_w[n.layer] = col_w[n.layer].max(n.w);
    }
    let mut col_x = vec![MARGIN + BAND_PAD; layers];
    for l in 1..layers {
        col_x[l] = col_x[l - 1] + col_w[l - 1] + COL_GAP;
    }
    let width = col_x[layers - 1] + col_w[layers - 1] + BAND_PAD + MARGIN;

    // order within cells: layer by layer, by mean rank of callers, then by calls, then name
    let mut rank = vec![0.0f64; nodes.len()];
    let mut weight = vec![0u64; nodes.len()];
    for e in edges {
        weight[e.from] = weight[e.from].saturating_add(e.calls);
        weight[e.to] = weight[e.to].saturating_add(e.calls);
    }
    let mut cells: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for l in 0..layers {
        let mut ids: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].layer == l).collect();
        let key = |i: usize| -> f64 {
            let preds: Vec<f64> = edges.iter().filter(|e| e.to == i && nodes[e.from].layer < l).map(|e| rank[e.from]).collect();
            if preds.is_empty() { f64::MAX } else { preds.iter().sum::<f64>() / preds.len() as f64 }
        };
        let keys: Vec<(usize, f64)> = ids.iter().map(|&i| (i, key(i))).collect();
        ids.sort_by(|a, b| {
            let ka = keys.iter().find(|k| k.0 == *a).unwrap().1;
            let kb = keys.iter().find(|k| k.0 == *b).unwrap().1;
            nodes[*a].module.cmp(&nodes[*b].module).then(ka.total_cmp(&kb)).then(weight[*b].cmp(&weight[*a])).then_with(|| nodes[*a].symbol.cmp(&nodes[*b].symbol))
        });
        for &i in &ids {
            let cell = cells.entry((nodes[i].module, l)).or_default();
            rank[i] = cell.len() as f64;
            cell.push(i);
        }
    }
    // bands
    let mut y = 0.0;
    for m in 0..modules.len() {
        let rows = (0..layers).map(|l| cells.get(&(m, l)).map_or(0, Vec::len)).max().unwrap_or(0);
        if rows == 0 {
            continue;
        }
        let top = y + BAND_HEAD + BAND_PAD * 0.5;
        let band_inner = rows as f64 * (NODE_H + NODE_GAP) - NODE_GAP;
        for l in 0..layers {
            let Some(cell) = cells.get(&(m, l)) else { continue };
            // centre a short column in its band
            let own = cell.len() as f64 * (NODE_H + NODE_GAP) - NODE_GAP;
            let off = (band_inner - own) / 2.0;
            for (r, &i) in cell.iter().enumerate() {
                nodes[i].x = col_x[l] + (col_w[l] - nodes[i].w) / 2.0;
                nodes[i].y = top + off + r as f64 * (NODE_H + NODE_GAP);
            }
        }
        y = top + band_inner + BAND_PAD + BAND_GAP;
    }
    (width, y - BAND_GAP + MARGIN)
}

/// The vertical extent of each module's band (None: no node in that module).
fn bands(nodes: &[Node], modules: &[String]) -> Vec<Option<(f64, f64)>> {
    let mut out: Vec<Option<(f64, f64)>> = vec![None; modules.len()];
    for n in nodes {
        let (lo, hi) = (n.y - BAND_HEAD - BAND_PAD * 0.5, n.y + NODE_H + BAND_PAD);
        out[n.module] = Some(match out[n.module] {
            Some((a, b)) => (a.min(lo), b.max(hi)),
            None => (lo, hi),
        });
    }
    out
}

/// A minimal HTML page: the SVG, then the text report.
pub fn render_html(dump: &Dump, svg: &str, report_text: &str) -> String {
    let title = format!("drti report — {}", known_or(&dump.exe));
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\nbody {{ font-family: {FONT}; margin: 1.5em; color: #212121; }}\npre {{ font-size: 12px; background: #f5f7fa; padding: 1em; overflow-x: auto; }}\n.graph {{ overflow-x: auto; }}\n</style>\n</head>\n<body>\n<h1>{t}</h1>\n<div class=\"graph\">\n{svg}</div>\n<h2>Report</h2>\n<pre>{r}</pre>\n</body>\n</html>\n",
        t = xml_escape(&title),
        r = xml_escape(report_text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demangles_common_cases() {
        assert_eq!(demangle("_ZNK6Square4areaEv"), "Square::area");
        assert_eq!(demangle("_Z10total_areaPKP5Shapem"), "total_area");
        assert_eq!(demangle("_ZN3foo3barEi"), "foo::bar");
        assert_eq!(demangle("_ZN3FooC2Ev"), "Foo::Foo");
        assert_eq!(demangle("_ZN2ns3FooD1Ev"), "ns::Foo::~Foo");
        assert_eq!(demangle("_ZN6VectorplERKS_"), "Vector::operator+");
        assert_eq!(demangle("_ZNSt6vectorIiSaIiEE9push_backERKi"), "std::vector<…>::push_back");
        assert_eq!(demangle("_ZL6helperv"), "helper");
        assert_eq!(demangle("_ZNK6Square4areaEv.cold"), "Square::area [clone .cold]");
        assert_eq!(demangle("apply"), "apply");
        assert_eq!(demangle("_Z"), "_Z");
        assert_eq!(demangle("_ZN3fooE"), "foo");
        assert_eq!(demangle("_ZN99fooE"), "_ZN99fooE");
    }

    #[test]
    fn escapes() {
        assert_eq!(xml_escape("a<b>&\"'\u{1}"), "a&lt;b&gt;&amp;&quot;&apos;\u{FFFD}");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(thousands(12), "12");
    }
}
