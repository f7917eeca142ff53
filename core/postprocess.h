/* yolose — upstream YOLOv5's non_max_suppression and scale_coords.
 *
 * Candidates: objectness > conf; score = objectness x class probability;
 * best class per box (multi_label=False); score > conf; optional class
 * filter; at most 30000 by score; class-aware NMS by offsetting boxes by
 * class x 7680 (in float32, as upstream), IoU > iou suppresses; at most
 * max_detections kept.  Boxes are then mapped from the letterbox back to
 * the frame (pad = (S - size x gain) / 2, unrounded) and clipped. */
#ifndef YOLOSE_POSTPROCESS_H
#define YOLOSE_POSTPROCESS_H

#include <glib.h>
#include "letterbox.h"

G_BEGIN_DECLS

typedef struct {
  int class_id;
  float confidence;
  float x1, y1, x2, y2; /* frame pixels, clipped to the frame */
} YoloseDetection;

typedef struct {
  float conf_threshold; /* 0.25 */
  float iou_threshold;  /* 0.45 */
  int max_detections;   /* 300 */
  /* num_classes bytes, non-zero = keep that class; NULL keeps all. */
  const guint8 *class_mask;
} YoloseNmsParams;

#define YOLOSE_DEFAULT_CONF_THRESHOLD 0.25f
#define YOLOSE_DEFAULT_IOU_THRESHOLD 0.45f
#define YOLOSE_DEFAULT_MAX_DETECTIONS 300

void yolose_nms_params_init (YoloseNmsParams *params);

typedef struct _YolosePostprocess YolosePostprocess;

/* Working memory for up to @rows candidates, allocated once so that no
 * frame allocates. */
YolosePostprocess *yolose_postprocess_new (gsize rows, int num_classes);
void yolose_postprocess_free (YolosePostprocess *post);

/* @raw is rows x (5 + num_classes) as upstream's inference output (boxes
 * cx, cy, w, h in letterbox pixels; sigmoid applied).  Writes at most
 * min(@out_cap, max_detections) detections, best first, and returns how
 * many. */
gsize yolose_postprocess_run (YolosePostprocess *post, const float *raw,
    const YoloseNmsParams *params, const YoloseLetterbox *box,
    YoloseDetection *out, gsize out_cap);

G_END_DECLS

#endif
