/* yolose element — drawing detections with Cairo/Pango and blending them
 * with GStreamer's overlay composition. */
#include "gstyoloseoverlay.h"

#include <math.h>
#include <string.h>
#include <pango/pangocairo.h>

struct _GstYoloseOverlay {
  PangoFontMap *font_map;
  PangoContext *context;
  PangoLayout *layout;
  int font_px; /* size the layout's font was set for */
};

/* A caption's place and size, in frame pixels. */
typedef struct {
  gchar text[96];
  int x, y, w, h;
} Caption;

/* Upstream YOLOv5's palette, so that yolose's pictures look like the ones
 * its users know. */
static const guint32 palette[] = {
  0xFF3838,
  0xFF9D97,
  0xFF701F,
  0xFFB21D,
  0xCFD231,
  0x48F90A,
  0x92CC17,
  0x3DDB86,
  0x1A9334,
  0x00D4BB,
  0x2C99A8,
  0x00C2FF,
  0x344593,
  0x6473FF,
  0x0018EC,
  0x8438FF,
  0x520085,
  0xCB38FF,
  0xFF95C8,
  0xFF37C7,
};

guint32
gst_yolose_overlay_class_colour (int class_id)
{
  guint n = G_N_ELEMENTS (palette);
  return palette[(guint)ABS (class_id) % n];
}

GstYoloseOverlay *
gst_yolose_overlay_new (void)
{
  GstYoloseOverlay *overlay = g_new0 (GstYoloseOverlay, 1);

  overlay->font_map = pango_cairo_font_map_new ();
  overlay->context = pango_font_map_create_context (overlay->font_map);
  overlay->layout = pango_layout_new (overlay->context);
  return overlay;
}

void
gst_yolose_overlay_free (GstYoloseOverlay *overlay)
{
  if (overlay == NULL)
    return;
  g_object_unref (overlay->layout);
  g_object_unref (overlay->context);
  g_object_unref (overlay->font_map);
  g_free (overlay);
}

static void
set_font_size (GstYoloseOverlay *overlay, int px)
{
  PangoFontDescription *desc;

  if (overlay->font_px == px)
    return;
  desc = pango_font_description_from_string ("Sans Bold");
  pango_font_description_set_absolute_size (desc, (double)px * PANGO_SCALE);
  pango_layout_set_font_description (overlay->layout, desc);
  pango_font_description_free (desc);
  overlay->font_px = px;
}

/* Sizes that stay readable from a thumbnail to 4K. */
static int
auto_line_width (int width, int height)
{
  return MAX (2, MIN (width, height) / 240);
}

static int
auto_font_px (int width, int height)
{
  return CLAMP (MIN (width, height) / 30, 8, 64);
}

static void
caption_text (const GstYoloseBox *box, const GstYoloseOverlayStyle *style,
    gchar *text, gsize size)
{
  const gchar *label = g_quark_to_string (box->label);

  if (style->show_labels && style->show_confidence)
    g_snprintf (text, size, "%s %.2f", label, box->confidence);
  else if (style->show_labels)
    g_snprintf (text, size, "%s", label);
  else if (style->show_confidence)
    g_snprintf (text, size, "%.2f", box->confidence);
  else
    text[0] = '\0';
}

/* Above the box when there is room, inside its top edge otherwise, and
 * always inside the frame. */
static void
place_caption (GstYoloseOverlay *overlay, const GstYoloseBox *box, int frame_w,
    int frame_h, Caption *cap)
{
  int tw, th;
  int pad = MAX (1, overlay->font_px / 6);

  pango_layout_set_text (overlay->layout, cap->text, -1);
  pango_layout_get_pixel_size (overlay->layout, &tw, &th);
  cap->w = tw + 2 * pad;
  cap->h = th;
  cap->x = (int)floorf (box->x1);
  cap->y = (int)floorf (box->y1) - cap->h;
  if (cap->y < 0)
    cap->y = (int)floorf (box->y1);
  cap->x = CLAMP (cap->x, 0, MAX (0, frame_w - cap->w));
  cap->y = CLAMP (cap->y, 0, MAX (0, frame_h - cap->h));
}

typedef struct {
  int x0, y0, x1, y1; /* exclusive end */
} Area;

static void
area_add (Area *a, int x0, int y0, int x1, int y1)
{
  a->x0 = MIN (a->x0, x0);
  a->y0 = MIN (a->y0, y0);
  a->x1 = MAX (a->x1, x1);
  a->y1 = MAX (a->y1, y1);
}

static void
set_colour (cairo_t *cr, guint32 rgb)
{
  cairo_set_source_rgb (cr, ((rgb >> 16) & 0xff) / 255.0,
      ((rgb >> 8) & 0xff) / 255.0, (rgb & 0xff) / 255.0);
}

static void
draw_box (cairo_t *cr, const GstYoloseBox *box, int line_width)
{
  set_colour (cr, gst_yolose_overlay_class_colour (box->class_id));
  cairo_set_line_width (cr, line_width);
  cairo_rectangle (cr, box->x1, box->y1, box->x2 - box->x1, box->y2 - box->y1);
  cairo_stroke (cr);
}

static void
draw_caption (GstYoloseOverlay *overlay, cairo_t *cr, const GstYoloseBox *box,
    const Caption *cap)
{
  int pad = MAX (1, overlay->font_px / 6);

  set_colour (cr, gst_yolose_overlay_class_colour (box->class_id));
  cairo_rectangle (cr, cap->x, cap->y, cap->w, cap->h);
  cairo_fill (cr);
  cairo_set_source_rgb (cr, 1, 1, 1);
  cairo_move_to (cr, cap->x + pad, cap->y);
  pango_layout_set_text (overlay->layout, cap->text, -1);
  pango_cairo_show_layout (cr, overlay->layout);
}

/* A piece of the overlay: a rectangle of the frame with what to draw in
 * it.  Blending costs time for every pixel a rectangle covers, so a large
 * box is drawn as four strips along its edges plus its caption, and only a
 * small one as a single rectangle. */
typedef struct {
  Area area;
  guint box;
  gboolean draws_box;
  gboolean draws_caption;
} Piece;

static GstBuffer *
render_piece (GstYoloseOverlay *overlay, const Piece *piece,
    const GstYoloseBox *boxes, const Caption *caps, int line_width)
{
  const Area *area = &piece->area;
  int w = area->x1 - area->x0, h = area->y1 - area->y0;
  int stride = cairo_format_stride_for_width (CAIRO_FORMAT_ARGB32, w);
  GstBuffer *buf = gst_buffer_new_allocate (NULL, (gsize)stride * h, NULL);
  gsize offset[GST_VIDEO_MAX_PLANES] = { 0 };
  gint strides[GST_VIDEO_MAX_PLANES] = { stride };
  GstMapInfo map;
  cairo_surface_t *surface;
  cairo_t *cr;

  if (buf == NULL || !gst_buffer_map (buf, &map, GST_MAP_WRITE)) {
    if (buf)
      gst_buffer_unref (buf);
    return NULL;
  }
  memset (map.data, 0, map.size);
  surface = cairo_image_surface_create_for_data (map.data, CAIRO_FORMAT_ARGB32,
      w, h, stride);
  cr = cairo_create (surface);
  pango_cairo_update_context (cr, overlay->context);
  cairo_translate (cr, -area->x0, -area->y0);
  if (piece->draws_box)
    draw_box (cr, &boxes[piece->box], line_width);
  if (piece->draws_caption)
    draw_caption (overlay, cr, &boxes[piece->box], &caps[piece->box]);
  cairo_destroy (cr);
  cairo_surface_destroy (surface);
  gst_buffer_unmap (buf, &map);

  gst_buffer_add_video_meta_full (buf, GST_VIDEO_FRAME_FLAG_NONE,
      GST_VIDEO_OVERLAY_COMPOSITION_FORMAT_RGB, w, h, 1, offset, strides);
  return buf;
}

static void
add_piece (GArray *pieces, int x0, int y0, int x1, int y1, int fw, int fh,
    guint box, gboolean draws_box, gboolean draws_caption)
{
  Piece p = { { MAX (x0, 0), MAX (y0, 0), MIN (x1, fw), MIN (y1, fh) }, box,
    draws_box, draws_caption };

  if (p.area.x1 > p.area.x0 && p.area.y1 > p.area.y0)
    g_array_append_val (pieces, p);
}

static gsize
area_size (int x0, int y0, int x1, int y1)
{
  return (gsize)MAX (0, x1 - x0) * (gsize)MAX (0, y1 - y0);
}

/* The pieces for box @i: one rectangle for a small box, its four edges and
 * its caption apart for a large one (then far fewer pixels to blend). */
static void
plan_box (GArray *pieces, const GstYoloseBox *b, const Caption *cap, guint i,
    int margin, int fw, int fh)
{
  int x0 = (int)floorf (b->x1), y0 = (int)floorf (b->y1);
  int x1 = (int)ceilf (b->x2), y1 = (int)ceilf (b->y2);
  gboolean has_caption = cap->text[0] != '\0';
  Area whole = { x0 - margin, y0 - margin, x1 + margin, y1 + margin };
  gsize strips;

  if (has_caption)
    area_add (&whole, cap->x, cap->y, cap->x + cap->w, cap->y + cap->h);
  strips = 2 * area_size (x0 - margin, 0, x1 + margin, 2 * margin)
      + 2 * area_size (0, y0 + margin, 2 * margin, y1 - margin)
      + (has_caption ? area_size (0, 0, cap->w, cap->h) : 0);
  if (area_size (whole.x0, whole.y0, whole.x1, whole.y1) <= 2 * strips) {
    add_piece (pieces, whole.x0, whole.y0, whole.x1, whole.y1, fw, fh, i, TRUE,
        has_caption);
    return;
  }
  add_piece (pieces, x0 - margin, y0 - margin, x1 + margin, y0 + margin, fw, fh,
      i, TRUE, FALSE);
  add_piece (pieces, x0 - margin, y1 - margin, x1 + margin, y1 + margin, fw, fh,
      i, TRUE, FALSE);
  add_piece (pieces, x0 - margin, y0 + margin, x0 + margin, y1 - margin, fw, fh,
      i, TRUE, FALSE);
  add_piece (pieces, x1 - margin, y0 + margin, x1 + margin, y1 - margin, fw, fh,
      i, TRUE, FALSE);
  if (has_caption)
    add_piece (pieces, cap->x, cap->y, cap->x + cap->w, cap->y + cap->h, fw, fh,
        i, FALSE, TRUE);
}

/* Blends every piece in one composition. */
static gboolean
blend_pieces (GstYoloseOverlay *overlay, GstVideoFrame *frame,
    const GArray *pieces, const GstYoloseBox *boxes, const Caption *caps,
    int line_width)
{
  GstVideoOverlayComposition *comp = NULL;
  gboolean ok = TRUE;

  for (guint i = 0; i < pieces->len && ok; i++) {
    const Piece *p = &g_array_index (pieces, Piece, i);
    GstBuffer *pixels = render_piece (overlay, p, boxes, caps, line_width);
    GstVideoOverlayRectangle *rect;

    if (pixels == NULL) {
      ok = FALSE;
      break;
    }
    rect = gst_video_overlay_rectangle_new_raw (pixels, p->area.x0, p->area.y0,
        p->area.x1 - p->area.x0, p->area.y1 - p->area.y0,
        GST_VIDEO_OVERLAY_FORMAT_FLAG_PREMULTIPLIED_ALPHA);
    gst_buffer_unref (pixels);
    if (comp == NULL)
      comp = gst_video_overlay_composition_new (rect);
    else
      gst_video_overlay_composition_add_rectangle (comp, rect);
    gst_video_overlay_rectangle_unref (rect);
  }
  if (comp != NULL) {
    ok = ok && gst_video_overlay_composition_blend (comp, frame);
    gst_video_overlay_composition_unref (comp);
  }
  return ok;
}

gboolean
gst_yolose_overlay_draw (GstYoloseOverlay *overlay, GstVideoFrame *frame,
    const GstYoloseBox *boxes, guint n_boxes,
    const GstYoloseOverlayStyle *style)
{
  int fw = GST_VIDEO_FRAME_WIDTH (frame), fh = GST_VIDEO_FRAME_HEIGHT (frame);
  int line_width
      = style->line_width ? (int)style->line_width : auto_line_width (fw, fh);
  int margin = line_width / 2 + 1;
  GArray *pieces;
  Caption *caps;
  gboolean ok;

  if (n_boxes == 0)
    return TRUE;

  set_font_size (overlay, auto_font_px (fw, fh));
  caps = g_new0 (Caption, n_boxes);
  pieces = g_array_new (FALSE, FALSE, sizeof (Piece));
  for (guint i = 0; i < n_boxes; i++) {
    caption_text (&boxes[i], style, caps[i].text, sizeof caps[i].text);
    if (caps[i].text[0] != '\0')
      place_caption (overlay, &boxes[i], fw, fh, &caps[i]);
    plan_box (pieces, &boxes[i], &caps[i], i, margin, fw, fh);
  }
  ok = blend_pieces (overlay, frame, pieces, boxes, caps, line_width);
  g_array_free (pieces, TRUE);
  g_free (caps);
  return ok;
}
