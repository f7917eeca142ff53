/* yolose — upstream YOLOv5's non_max_suppression and scale_coords.
 *
 * Follows utils/general.py of YOLOv5 v6.x with multi_label=False and
 * agnostic=False, and torchvision's CPU nms, step by step in float32 so
 * that borderline boxes fall on the same side as upstream's:
 *
 *   obj > conf;  scores = class probabilities * obj;  box = xywh2xyxy;
 *   best class (first maximum wins, like torch.max);  score > conf;
 *   class filter;  at most 30000 by score;  boxes + class * 7680 (float
 *   adds, which round coordinates that IoU then sees);  sort by score
 *   (stable);  greedy suppression of IoU > iou with
 *   IoU = inter / (area_i + area_j - inter), areas from the offset boxes;
 *   the first max_det survivors.
 *
 * Then scale_coords: subtract the unrounded padding, divide by the gain,
 * clip to the frame.  Rounding to whole pixels is left to the caller. */
#include "postprocess.h"

#include <string.h>

/* upstream: max_wh, the class offset that keeps classes apart in NMS */
#define CLASS_OFFSET 7680.0f
/* upstream: max_nms, the most boxes handed to torchvision.ops.nms */
#define MAX_NMS_INPUT 30000

typedef struct {
  float score;
  int row; /* index of the candidate, for stable ties */
} SortKey;

typedef struct {
  float x1, y1, x2, y2; /* letterbox pixels, as upstream's x[:, :4] */
  int class_id;
} Candidate;

struct _YolosePostprocess {
  gsize rows;
  int num_classes;
  Candidate *candidates; /* rows */
  SortKey *order;        /* rows */
  /* NMS working set in score order, at most MAX_NMS_INPUT */
  float *nx1, *ny1, *nx2, *ny2, *area;
  guint8 *suppressed;
};

void
yolose_nms_params_init (YoloseNmsParams *params)
{
  memset (params, 0, sizeof *params);
  params->conf_threshold = YOLOSE_DEFAULT_CONF_THRESHOLD;
  params->iou_threshold = YOLOSE_DEFAULT_IOU_THRESHOLD;
  params->max_detections = YOLOSE_DEFAULT_MAX_DETECTIONS;
  params->class_mask = NULL;
}

YolosePostprocess *
yolose_postprocess_new (gsize rows, int num_classes)
{
  YolosePostprocess *post;
  gsize nms_rows = MIN (rows, MAX_NMS_INPUT);

  g_return_val_if_fail (rows >= 1 && num_classes >= 1, NULL);

  post = g_new0 (YolosePostprocess, 1);
  post->rows = rows;
  post->num_classes = num_classes;
  post->candidates = g_try_new (Candidate, rows);
  post->order = g_try_new (SortKey, rows);
  post->nx1 = g_try_new (float, nms_rows);
  post->ny1 = g_try_new (float, nms_rows);
  post->nx2 = g_try_new (float, nms_rows);
  post->ny2 = g_try_new (float, nms_rows);
  post->area = g_try_new (float, nms_rows);
  post->suppressed = g_try_new (guint8, nms_rows);
  if (!post->candidates || !post->order || !post->nx1 || !post->ny1
      || !post->nx2 || !post->ny2 || !post->area || !post->suppressed) {
    yolose_postprocess_free (post);
    return NULL;
  }
  return post;
}

void
yolose_postprocess_free (YolosePostprocess *post)
{
  if (post == NULL)
    return;
  g_free (post->candidates);
  g_free (post->order);
  g_free (post->nx1);
  g_free (post->ny1);
  g_free (post->nx2);
  g_free (post->ny2);
  g_free (post->area);
  g_free (post->suppressed);
  g_free (post);
}

/* torch.max over the class scores (already multiplied by objectness):
 * the first index wins a tie. */
static int
best_class (const float *class_prob, int num_classes, float obj, float *score)
{
  int best = 0;
  float best_score = class_prob[0] * obj;

  for (int c = 1; c < num_classes; c++) {
    float s = class_prob[c] * obj;
    if (s > best_score) {
      best_score = s;
      best = c;
    }
  }
  *score = best_score;
  return best;
}

/* The rows that pass both confidence tests and the class filter, with
 * their boxes as x1, y1, x2, y2.  Returns how many. */
static gsize
collect_candidates (YolosePostprocess *post, const float *raw,
    const YoloseNmsParams *params)
{
  gsize cols = 5 + (gsize)post->num_classes;
  gsize n = 0;

  for (gsize r = 0; r < post->rows; r++) {
    const float *row = raw + r * cols;
    Candidate *cand;
    float score;
    int cls;

    /* upstream: xc = obj > conf_thres, before anything else */
    if (!(row[4] > params->conf_threshold))
      continue;
    cls = best_class (row + 5, post->num_classes, row[4], &score);
    if (!(score > params->conf_threshold))
      continue;
    if (params->class_mask != NULL && !params->class_mask[cls])
      continue;
    cand = &post->candidates[n];
    cand->x1 = row[0] - row[2] / 2;
    cand->y1 = row[1] - row[3] / 2;
    cand->x2 = row[0] + row[2] / 2;
    cand->y2 = row[1] + row[3] / 2;
    cand->class_id = cls;
    post->order[n].score = score;
    post->order[n].row = (int)n;
    n++;
  }
  return n;
}

/* Score descending; equal scores keep their original order, as the
 * stable sort in torchvision's nms does.  With the row as tie-break this
 * is a strict total order, so any correct sort gives the same list. */
static inline gboolean
key_before (const SortKey *a, const SortKey *b)
{
  if (a->score != b->score)
    return a->score > b->score;
  return a->row < b->row;
}

static void
sift_down (SortKey *keys, gsize root, gsize n)
{
  for (;;) {
    gsize child = 2 * root + 1, last = root;
    SortKey tmp;

    if (child < n && key_before (&keys[last], &keys[child]))
      last = child;
    if (child + 1 < n && key_before (&keys[last], &keys[child + 1]))
      last = child + 1;
    if (last == root)
      return;
    tmp = keys[root];
    keys[root] = keys[last];
    keys[last] = tmp;
    root = last;
  }
}

/* Heapsort: O(n log n) in place; qsort may allocate, and run() must not. */
static void
sort_keys (SortKey *keys, gsize n)
{
  for (gsize i = n / 2; i-- > 0;)
    sift_down (keys, i, n);
  for (gsize end = n; end-- > 1;) {
    SortKey tmp = keys[0];
    keys[0] = keys[end];
    keys[end] = tmp;
    sift_down (keys, 0, end);
  }
}

/* Offset boxes and their areas in score order, as torchvision sees them. */
static void
prepare_nms (YolosePostprocess *post, gsize n)
{
  for (gsize k = 0; k < n; k++) {
    const Candidate *cand = &post->candidates[post->order[k].row];
    float offset = (float)cand->class_id * CLASS_OFFSET;

    post->nx1[k] = cand->x1 + offset;
    post->ny1[k] = cand->y1 + offset;
    post->nx2[k] = cand->x2 + offset;
    post->ny2[k] = cand->y2 + offset;
    post->area[k]
        = (post->nx2[k] - post->nx1[k]) * (post->ny2[k] - post->ny1[k]);
    post->suppressed[k] = 0;
  }
}

static gboolean
overlaps_too_much (const YolosePostprocess *post, gsize i, gsize j,
    float iou_threshold)
{
  float xx1 = MAX (post->nx1[i], post->nx1[j]);
  float yy1 = MAX (post->ny1[i], post->ny1[j]);
  float xx2 = MIN (post->nx2[i], post->nx2[j]);
  float yy2 = MIN (post->ny2[i], post->ny2[j]);
  float w = MAX (0.0f, xx2 - xx1);
  float h = MAX (0.0f, yy2 - yy1);
  float inter = w * h;
  float iou = inter / (post->area[i] + post->area[j] - inter);

  return iou > iou_threshold;
}

/* scale_coords: pad and gain as upstream computes them (double, unrounded
 * padding), applied in float32, then clip_coords. */
static void
to_frame (const YoloseLetterbox *box, YoloseDetection *det)
{
  double gain = box->scale;
  float pad_x = (float)((box->size - box->src_w * gain) / 2);
  float pad_y = (float)((box->size - box->src_h * gain) / 2);
  float g = (float)gain;
  float w = (float)box->src_w, h = (float)box->src_h;

  det->x1 = CLAMP ((det->x1 - pad_x) / g, 0.0f, w);
  det->y1 = CLAMP ((det->y1 - pad_y) / g, 0.0f, h);
  det->x2 = CLAMP ((det->x2 - pad_x) / g, 0.0f, w);
  det->y2 = CLAMP ((det->y2 - pad_y) / g, 0.0f, h);
}

/* The detection for sorted candidate @k, in frame pixels. */
static void
emit (const YolosePostprocess *post, gsize k, const YoloseLetterbox *box,
    YoloseDetection *det)
{
  const Candidate *cand = &post->candidates[post->order[k].row];

  det->class_id = cand->class_id;
  det->confidence = post->order[k].score;
  det->x1 = cand->x1;
  det->y1 = cand->y1;
  det->x2 = cand->x2;
  det->y2 = cand->y2;
  to_frame (box, det);
}

/* Greedy NMS over the first @n sorted candidates, writing survivors best
 * first; stops after @limit of them, since later candidates can never
 * change an earlier decision. */
static gsize
suppress_and_emit (YolosePostprocess *post, gsize n, float iou_threshold,
    const YoloseLetterbox *box, YoloseDetection *out, gsize limit)
{
  gsize n_kept = 0;

  for (gsize i = 0; i < n && n_kept < limit; i++) {
    if (post->suppressed[i])
      continue;
    for (gsize j = i + 1; j < n; j++)
      if (!post->suppressed[j] && overlaps_too_much (post, i, j, iou_threshold))
        post->suppressed[j] = 1;
    emit (post, i, box, &out[n_kept++]);
  }
  return n_kept;
}

gsize
yolose_postprocess_run (YolosePostprocess *post, const float *raw,
    const YoloseNmsParams *params, const YoloseLetterbox *box,
    YoloseDetection *out, gsize out_cap)
{
  gsize n, limit;

  g_return_val_if_fail (post != NULL && raw != NULL && params != NULL, 0);
  g_return_val_if_fail (box != NULL && (out != NULL || out_cap == 0), 0);

  /* upstream keeps i[:max_det], so max_det = 0 keeps nothing */
  if (params->max_detections <= 0 || out_cap == 0)
    return 0;
  limit = MIN (out_cap, (gsize)params->max_detections);

  n = collect_candidates (post, raw, params);
  sort_keys (post->order, n);
  n = MIN (n, MAX_NMS_INPUT);
  prepare_nms (post, n);
  return suppress_and_emit (post, n, params->iou_threshold, box, out, limit);
}
