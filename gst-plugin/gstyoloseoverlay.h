/* yolose element — drawing detections onto the video.
 *
 * Boxes and "label 0.87" captions are drawn with Cairo and Pango into ARGB
 * rectangles that cover only the boxes' edges and captions (blending costs
 * time for every pixel covered: a box filling a 1080p frame blends 3-4x
 * faster as four strips), and GStreamer's overlay composition blends them
 * into the frame, whatever its format. */
#ifndef GST_YOLOSE_OVERLAY_H
#define GST_YOLOSE_OVERLAY_H

#include <gst/video/video.h>
#include "gstyolosemodel.h"

G_BEGIN_DECLS

typedef struct {
  guint line_width; /* pixels; 0 picks one from the frame size */
  gboolean show_labels;
  gboolean show_confidence;
} GstYoloseOverlayStyle;

typedef struct _GstYoloseOverlay GstYoloseOverlay;

GstYoloseOverlay *gst_yolose_overlay_new (void);
void gst_yolose_overlay_free (GstYoloseOverlay *overlay);

/* The colour of class @class_id, as 0xRRGGBB. */
guint32 gst_yolose_overlay_class_colour (int class_id);

/* Draws @boxes (frame pixels) onto @frame, which must be mapped for
 * writing.  Returns FALSE only when GStreamer could not blend into the
 * frame's format. */
gboolean gst_yolose_overlay_draw (GstYoloseOverlay *overlay,
    GstVideoFrame *frame, const GstYoloseBox *boxes, guint n_boxes,
    const GstYoloseOverlayStyle *style);

G_END_DECLS

#endif
