/* yolose element — drawing detections onto the video.
 *
 * Boxes and "label 0.87" captions are drawn with Cairo and Pango into one
 * ARGB rectangle that covers only the detections, and GStreamer's overlay
 * composition blends it into the frame, whatever its format. */
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
                                  GstVideoFrame *frame,
                                  const GstYoloseBox *boxes, guint n_boxes,
                                  const GstYoloseOverlayStyle *style);

G_END_DECLS

#endif
