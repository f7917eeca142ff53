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
  0xFF3838, 0xFF9D97, 0xFF701F, 0xFFB21D, 0xCFD231, 0x48F90A, 0x92CC17,
  0x3DDB86, 0x1A9334, 0x00D4BB, 0x2C99A8, 0x00C2FF, 0x344593, 0x6473FF,
  0x0018EC, 0x8438FF, 0x520085, 0xCB38FF, 0xFF95C8, 0xFF37C7,
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

/* Renders into a premultiplied ARGB buffer covering @area only: drawing
 * and blending cost grows with the pixels covered, and detections rarely
 * cover the whole frame. */
static GstBuffer *
render (GstYoloseOverlay *overlay, const Area *area, const GstYoloseBox *boxes,
        const Caption *caps, guint n, int line_width)
{
  int w = area->x1 - area->x0, h = area->y1 - area->y0;
  int stride = cairo_format_stride_for_width (CAIRO_FORMAT_ARGB32, w);
  GstBuffer *buf = gst_buffer_new_allocate (NULL, (gsize)stride * h, NULL);
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
  for (guint i = 0; i < n; i++)
    draw_box (cr, &boxes[i], line_width);
  for (guint i = 0; i < n; i++) {
    if (caps[i].text[0] != '\0')
      draw_caption (overlay, cr, &boxes[i], &caps[i]);
  }
  cairo_destroy (cr);
  cairo_surface_destroy (surface);
  gst_buffer_unmap (buf, &map);

  {
    gsize offset[GST_VIDEO_MAX_PLANES] = { 0 };
    gint strides[GST_VIDEO_MAX_PLANES] = { stride };
    gst_buffer_add_video_meta_full (buf, GST_VIDEO_FRAME_FLAG_NONE,
                                    GST_VIDEO_OVERLAY_COMPOSITION_FORMAT_RGB, w,
                                    h, 1, offset, strides);
  }
  return buf;
}

static gboolean
blend (GstVideoFrame *frame, GstBuffer *pixels, const Area *area)
{
  GstVideoOverlayRectangle *rect;
  GstVideoOverlayComposition *comp;
  gboolean ok;

  rect = gst_video_overlay_rectangle_new_raw (
      pixels, area->x0, area->y0, area->x1 - area->x0, area->y1 - area->y0,
      GST_VIDEO_OVERLAY_FORMAT_FLAG_PREMULTIPLIED_ALPHA);
  comp = gst_video_overlay_composition_new (rect);
  ok = gst_video_overlay_composition_blend (comp, frame);
  gst_video_overlay_composition_unref (comp);
  gst_video_overlay_rectangle_unref (rect);
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
  Area area = { G_MAXINT, G_MAXINT, G_MININT, G_MININT };
  Caption *caps;
  GstBuffer *pixels;
  gboolean ok;

  if (n_boxes == 0)
    return TRUE;

  set_font_size (overlay, auto_font_px (fw, fh));
  caps = g_new0 (Caption, n_boxes);
  for (guint i = 0; i < n_boxes; i++) {
    const GstYoloseBox *b = &boxes[i];
    area_add (&area, (int)floorf (b->x1) - margin, (int)floorf (b->y1) - margin,
              (int)ceilf (b->x2) + margin, (int)ceilf (b->y2) + margin);
    caption_text (b, style, caps[i].text, sizeof caps[i].text);
    if (caps[i].text[0] != '\0') {
      place_caption (overlay, b, fw, fh, &caps[i]);
      area_add (&area, caps[i].x, caps[i].y, caps[i].x + caps[i].w,
                caps[i].y + caps[i].h);
    }
  }
  area.x0 = MAX (area.x0, 0);
  area.y0 = MAX (area.y0, 0);
  area.x1 = MIN (area.x1, fw);
  area.y1 = MIN (area.y1, fh);
  if (area.x1 <= area.x0 || area.y1 <= area.y0) {
    g_free (caps);
    return TRUE;
  }

  pixels = render (overlay, &area, boxes, caps, n_boxes, line_width);
  g_free (caps);
  if (pixels == NULL)
    return FALSE;
  ok = blend (frame, pixels, &area);
  gst_buffer_unref (pixels);
  return ok;
}
