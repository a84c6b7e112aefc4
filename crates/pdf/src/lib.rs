//! Accessible (tagged, PDF/UA-1) documents from a simple block model: headings, paragraphs and
//! labelled items, laid out on A4 with a letterhead on the first page, a running header and
//! "Page n of N" on every page (both marked as artifacts, so screen readers skip them).
//!
//! The text is set in DejaVu Sans, bundled with the binary, so that every machine makes the same
//! file from the same input: the output is deterministic (no creation time, a document id from
//! the content).

use krilla::configure::{Accessibility, ConfigurationBuilder};
use krilla::destination::XyzDestination;
use krilla::geom::Point;
use krilla::metadata::Metadata;
use krilla::outline::{Outline, OutlineNode};
use krilla::page::PageSettings;
use krilla::surface::Surface;
use krilla::tagging::{Artifact, ArtifactType, ContentTag, Identifier, SpanTag, Tag, TagGroup, TagKind, TagTree};
use krilla::text::{Font, TextDirection};
use krilla::{Document, SerializeSettings};
use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};
use std::collections::HashMap;
use std::num::NonZeroU16;

static REGULAR: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

const PAGE_W: f32 = 595.0;
const PAGE_H: f32 = 842.0;
const MARGIN: f32 = 56.0;
const TOP: f32 = 72.0;
const BOTTOM: f32 = 60.0;
const BODY: f32 = 10.0;

/// One block of a document, in reading order.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// A heading, level 1 to 3.
    Heading(u8, String),
    /// A paragraph; new lines in the text start new lines on the page.
    Para(String),
    /// A titled item with labelled lines ("Date: 3 May 2019"), kept together where it fits.
    Item { title: String, lines: Vec<String> },
    /// Starts the next block on a new page.
    PageBreak,
}

/// A whole document.
#[derive(Debug, Clone, PartialEq)]
pub struct PdfDocument {
    pub title: String,
    pub author: String,
    /// Lines at the top of the first page (the practice's name first).
    pub letterhead: Vec<String>,
    /// A short line at the top of every later page (whose record this is).
    pub running_header: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, thiserror::Error)]
#[error("the PDF could not be made: {0}")]
pub struct PdfError(String);

/// Widths of characters at size 1, read from the font once per document.
struct Metrics<'a> {
    font: FontRef<'a>,
    cache: HashMap<char, f32>,
}

impl<'a> Metrics<'a> {
    fn new(bytes: &'a [u8]) -> Result<Self, PdfError> {
        let font = FontRef::new(bytes).map_err(|e| PdfError(format!("font: {e}")))?;
        Ok(Self { font, cache: HashMap::new() })
    }
    /// The text with every character the font has no glyph for shown as "□" (PDF/UA refuses
    /// missing glyphs); `None` when the font draws it all.
    fn drawable(&self, text: &str) -> Option<String> {
        let charmap = self.font.charmap();
        if text.chars().all(|c| charmap.map(c).is_some()) {
            return None;
        }
        Some(text.chars().map(|c| if charmap.map(c).is_some() { c } else { '\u{25A1}' }).collect())
    }

    fn width(&mut self, text: &str, size: f32) -> f32 {
        let mut w = 0.0;
        for c in text.chars() {
            let font = &self.font;
            let cw = *self.cache.entry(c).or_insert_with(|| {
                let gm = font.glyph_metrics(Size::new(1.0), LocationRef::default());
                font.charmap().map(c).and_then(|g| gm.advance_width(g)).unwrap_or(0.6)
            });
            w += cw * size;
        }
        w
    }
}

/// Characters a PDF text run should not carry.
fn clean(s: &str) -> String {
    s.chars().map(|c| if c == '\t' { ' ' } else { c }).filter(|c| !c.is_control()).collect()
}

/// Breaks text into lines no wider than `max`, at spaces where it can, inside words where it must.
fn wrap(m: &mut Metrics<'_>, text: &str, size: f32, max: f32) -> Vec<String> {
    let mut out = Vec::new();
    for raw in text.split('\n') {
        let para = clean(raw);
        let mut line = String::new();
        for word in para.split(' ').filter(|w| !w.is_empty()) {
            let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
            if m.width(&candidate, size) <= max {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                out.push(std::mem::take(&mut line));
            }
            // A word wider than the line is cut where it must be.
            let mut piece = String::new();
            for c in word.chars() {
                piece.push(c);
                if m.width(&piece, size) > max {
                    piece.pop();
                    out.push(std::mem::take(&mut piece));
                    piece.push(c);
                }
            }
            line = piece;
        }
        out.push(line);
    }
    out
}

/// One line placed on a page.
struct Placed {
    y: f32,
    x: f32,
    size: f32,
    bold: bool,
    text: String,
    /// Index of the logical block (in `Laid::groups`) the line belongs to.
    group: usize,
}

/// The tag a group of lines carries.
enum GroupKind {
    Heading(u8, String),
    Para,
    /// An item: its title (heading level 3) and its lines, as one section.
    ItemTitle(String),
    ItemLine,
}

struct Laid {
    pages: Vec<Vec<Placed>>,
    groups: Vec<(GroupKind, Option<usize>)>,
    /// Headings of levels 1 and 2 for the bookmarks: (level, text, page, y).
    outline: Vec<(u8, String, usize, f32)>,
}

fn put(pages: &mut [Vec<Placed>], line: Placed) {
    if let Some(page) = pages.last_mut() {
        page.push(line);
    }
}

fn layout<'f>(doc: &PdfDocument, regular: &mut Metrics<'f>, bold: &mut Metrics<'f>) -> Laid {
    let width = PAGE_W - 2.0 * MARGIN;
    let mut pages: Vec<Vec<Placed>> = vec![Vec::new()];
    let mut groups: Vec<(GroupKind, Option<usize>)> = Vec::new();
    let mut outline = Vec::new();
    let mut y = MARGIN;
    // The letterhead: the practice's name large, then its details, right-aligned.
    for (i, line) in doc.letterhead.iter().enumerate() {
        let (size, b) = if i == 0 { (15.0, true) } else { (BODY, false) };
        let m = if b { &mut *bold } else { &mut *regular };
        let text = clean(line);
        let x = PAGE_W - MARGIN - m.width(&text, size).min(width);
        y += size * 1.3;
        groups.push((GroupKind::Para, None));
        pages[0].push(Placed { y, x, size, bold: b, text, group: groups.len() - 1 });
    }
    y += 18.0;
    let bottom = PAGE_H - BOTTOM;
    let new_page = |pages: &mut Vec<Vec<Placed>>, y: &mut f32| {
        pages.push(Vec::new());
        *y = TOP;
    };
    for block in &doc.blocks {
        match block {
            Block::PageBreak => {
                if !pages.last().is_some_and(Vec::is_empty) {
                    new_page(&mut pages, &mut y);
                }
            }
            Block::Heading(level, text) => {
                let size = match level {
                    1 => 17.0,
                    2 => 13.5,
                    _ => 11.5,
                };
                let lines = wrap(bold, text, size, width);
                let need = size * 1.4 * (lines.len() as f32 + 2.0) + BODY * 2.0;
                if y + need > bottom {
                    new_page(&mut pages, &mut y);
                }
                y += size * 0.6;
                if *level <= 2 {
                    outline.push((*level, clean(text), pages.len() - 1, y));
                }
                groups.push((GroupKind::Heading(*level, clean(text)), None));
                let g = groups.len() - 1;
                for l in lines {
                    y += size * 1.3;
                    put(&mut pages, Placed { y, x: MARGIN, size, bold: true, text: l, group: g });
                }
                y += size * 0.4;
            }
            Block::Para(text) => {
                groups.push((GroupKind::Para, None));
                let g = groups.len() - 1;
                for l in wrap(regular, text, BODY, width) {
                    if y + BODY * 1.45 > bottom {
                        new_page(&mut pages, &mut y);
                    }
                    y += BODY * 1.45;
                    if !l.is_empty() {
                        put(&mut pages, Placed { y, x: MARGIN, size: BODY, bold: false, text: l, group: g });
                    }
                }
                y += BODY * 0.6;
            }
            Block::Item { title, lines } => {
                let title_lines = wrap(bold, title, BODY + 0.5, width);
                let body: Vec<Vec<String>> = lines.iter().map(|l| wrap(regular, l, BODY, width - 12.0)).collect();
                let total = title_lines.len() + body.iter().map(Vec::len).sum::<usize>();
                let need = total as f32 * BODY * 1.4 + BODY;
                // Keep a short item together; a long one starts where it is.
                if (y + need > bottom && need < (bottom - TOP) / 3.0) || y + BODY * 4.0 > bottom {
                    new_page(&mut pages, &mut y);
                }
                y += BODY * 0.5;
                groups.push((GroupKind::ItemTitle(clean(title)), None));
                let section = groups.len() - 1;
                for l in title_lines {
                    y += (BODY + 0.5) * 1.4;
                    put(&mut pages, Placed { y, x: MARGIN, size: BODY + 0.5, bold: true, text: l, group: section });
                }
                for wrapped in body {
                    groups.push((GroupKind::ItemLine, Some(section)));
                    let g = groups.len() - 1;
                    for l in wrapped {
                        if y + BODY * 1.4 > bottom {
                            new_page(&mut pages, &mut y);
                        }
                        y += BODY * 1.4;
                        if !l.is_empty() {
                            put(&mut pages, Placed { y, x: MARGIN + 12.0, size: BODY, bold: false, text: l, group: g });
                        }
                    }
                }
                y += BODY * 0.6;
            }
        }
    }
    if pages.len() > 1 && pages.last().is_some_and(Vec::is_empty) {
        pages.pop();
    }
    Laid { pages, groups, outline }
}

fn draw(surface: &mut Surface<'_>, font: &Font, size: f32, x: f32, y: f32, text: &str) {
    surface.draw_text(Point::from_xy(x, y), font.clone(), size, text, false, TextDirection::Auto);
}

fn artifact(surface: &mut Surface<'_>, kind: ArtifactType, font: &Font, size: f32, x: f32, y: f32, text: &str) {
    surface.start_tagged(ContentTag::Artifact(Artifact::with_kind(kind)));
    draw(surface, font, size, x, y, text);
    surface.end_tagged();
}

/// Makes the PDF. `progress` is told each page as it is drawn (page, pages).
pub fn render(doc: &PdfDocument, mut progress: impl FnMut(usize, usize)) -> Result<Vec<u8>, PdfError> {
    let mut regular_m = Metrics::new(REGULAR)?;
    let mut bold_m = Metrics::new(BOLD)?;
    let laid = layout(doc, &mut regular_m, &mut bold_m);
    let regular = Font::new(REGULAR.into(), 0).ok_or_else(|| PdfError("the bundled font".into()))?;
    let bold = Font::new(BOLD.into(), 0).ok_or_else(|| PdfError("the bundled bold font".into()))?;
    let settings = SerializeSettings {
        configuration: ConfigurationBuilder::new()
            .with_accessibility_validator(Accessibility::UA1)
            .finish()
            .map_err(|e| PdfError(format!("{e:?}")))?,
        enable_tagging: true,
        ..SerializeSettings::default()
    };
    let mut document = Document::new_with(settings);
    let mut ids: Vec<Vec<Identifier>> = laid.groups.iter().map(|_| Vec::new()).collect();
    let pages = laid.pages.len();
    for (n, lines) in laid.pages.iter().enumerate() {
        let mut page = document
            .start_page_with(PageSettings::from_wh(PAGE_W, PAGE_H).ok_or_else(|| PdfError("page size".into()))?);
        let mut surface = page.surface();
        if n > 0 {
            let header = clean(&doc.running_header);
            let header = regular_m.drawable(&header).unwrap_or(header);
            artifact(&mut surface, ArtifactType::Header, &regular, 8.0, MARGIN, 36.0, &header);
        }
        for l in lines {
            // What the font cannot draw is shown as a box; the words themselves stay in the tag
            // (ActualText), for screen readers and copying.
            let shown = if l.bold { bold_m.drawable(&l.text) } else { regular_m.drawable(&l.text) };
            let span = SpanTag { actual_text: shown.as_ref().map(|_| l.text.as_str()), ..SpanTag::empty() };
            let id = surface.start_tagged(ContentTag::Span(span));
            let font = if l.bold { &bold } else { &regular };
            draw(&mut surface, font, l.size, l.x, l.y, shown.as_deref().unwrap_or(&l.text));
            surface.end_tagged();
            ids[l.group].push(id);
        }
        let footer = format!("Page {} of {pages}", n + 1);
        let fw = regular_m.width(&footer, 8.0);
        artifact(&mut surface, ArtifactType::Footer, &regular, 8.0, PAGE_W - MARGIN - fw, PAGE_H - 30.0, &footer);
        surface.finish();
        page.finish();
        progress(n + 1, pages);
    }
    // The tag tree: headings and paragraphs at the top, each item a section of its own.
    let mut tree = TagTree::new();
    let mut open_section: Option<TagGroup> = None;
    let mut ids = ids.into_iter();
    for (kind, parent) in &laid.groups {
        let mine = ids.next().unwrap_or_default();
        let leaf = |tag: TagKind, mine: Vec<Identifier>| {
            let mut g = TagGroup::new(tag);
            for id in mine {
                g.push(id);
            }
            g
        };
        if parent.is_none() {
            if let Some(section) = open_section.take() {
                tree.push(section);
            }
        }
        match kind {
            GroupKind::Heading(level, title) => {
                let level = NonZeroU16::new(u16::from(*level).clamp(1, 6)).unwrap_or(NonZeroU16::MIN);
                tree.push(leaf(Tag::Hn(level, Some(title.clone())).into(), mine));
            }
            GroupKind::Para => tree.push(leaf(Tag::P.into(), mine)),
            GroupKind::ItemTitle(title) => {
                let mut section = TagGroup::new(Tag::Section);
                let level = NonZeroU16::new(3).unwrap_or(NonZeroU16::MIN);
                section.push(leaf(Tag::Hn(level, Some(title.clone())).into(), mine));
                open_section = Some(section);
            }
            GroupKind::ItemLine => {
                let p = leaf(Tag::P.into(), mine);
                match open_section.as_mut() {
                    Some(section) => section.push(p),
                    None => tree.push(p),
                }
            }
        }
    }
    if let Some(section) = open_section.take() {
        tree.push(section);
    }
    document.set_tag_tree(tree);
    let mut bookmarks = Outline::new();
    let mut top: Option<OutlineNode> = None;
    for (level, text, page, y) in &laid.outline {
        let node = OutlineNode::new(text.clone(), XyzDestination::new(*page, Point::from_xy(MARGIN, *y)));
        match (level, top.as_mut()) {
            (2, Some(parent)) => parent.push_child(node),
            _ => {
                if let Some(done) = top.replace(node) {
                    bookmarks.push_child(done);
                }
            }
        }
    }
    if let Some(done) = top {
        bookmarks.push_child(done);
    }
    document.set_outline(bookmarks);
    document.set_metadata(
        Metadata::new()
            .title(doc.title.clone())
            .authors(vec![doc.author.clone()])
            .creator("caldicott".into())
            .language("en-GB".into()),
    );
    document.finish().map_err(|e| PdfError(format!("{e:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_words_and_lines_wrap_inside_the_margin() {
        let mut m = Metrics::new(REGULAR).map_err(|e| e.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let lines = wrap(&mut m, &format!("short {} words\nend", "x".repeat(300)), 10.0, 200.0);
        assert!(lines.len() >= 4, "{lines:?}");
        assert!(lines.iter().all(|l| m.width(l, 10.0) <= 200.0));
        assert_eq!(lines.last().map(String::as_str), Some("end"));
        assert_eq!(lines.concat().matches('x').count(), 300);
    }
}

#[cfg(test)]
mod any_text {
    use super::*;

    #[test]
    fn text_the_font_cannot_draw_still_makes_a_valid_pdf() {
        // Patients and staff write emoji, other scripts and stray control characters.
        let doc = PdfDocument {
            title: "Test".into(),
            author: "Test Surgery".into(),
            letterhead: vec!["Test Surgery".into()],
            running_header: "Header".into(),
            blocks: vec![
                Block::Heading(1, "Records".into()),
                Block::Para("Thanks 😀 你好 \u{0007} العربية — ok".into()),
                Block::Item { title: "Item 🩺".into(), lines: vec!["line \u{202e}reversed".into()] },
            ],
        };
        let pdf = render(&doc, |_, _| {}).unwrap_or_else(|e| panic!("{e}"));
        assert!(pdf.starts_with(b"%PDF"));
    }
}
