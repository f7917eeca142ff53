/* yolose — from an upstream checkpoint to a YoloseGraph.
 *
 * Mirrors upstream YOLOv5's parse_model (models/yolo.py): for each yaml row
 * [from, number, module, args] it computes the channels the same way
 * (make_divisible (c2 * width_multiple, 8), n = max (round (n *
 * depth_multiple), 1)) and then takes the module's weights from the pickled
 * model, checking every shape against what the yaml implies.  The seed's
 * SElayer is treated like Conv by parse_model (c1 = ch[f], c2 = args[0]
 * scaled by the width). */
#include "model_builder.h"

#include <math.h>
#include <string.h>

#include "yolose.h"

#define MAX_LAYERS 1024
#define MAX_CHANNELS 65536
#define MAX_KERNEL 31
#define MAX_REPEATS 256

typedef struct {
  YoloseCheckpoint *ckpt;
  YoloseGraph *graph;
  YoloseModelInfo *info;
  GError **error;
  int layer; /* yaml row being built */
  const char *module_name;
  gint64 params; /* of the current row */
  double flops;
  double row_flops_start; /* flops before the current row */
  double width, depth;
  int nc, na;
  int no; /* parse_model's na * (nc + 5) */
} Builder;

static gboolean fail (Builder *b, const char *format, ...) G_GNUC_PRINTF (2, 3);
static gboolean unsupported (Builder *b, const char *format, ...)
    G_GNUC_PRINTF (2, 3);

static gboolean
fail (Builder *b, const char *format, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, format);
  msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  if (b->layer >= 0)
    g_set_error (b->error, YOLOSE_ERROR, YOLOSE_ERROR_MODEL,
        "layer %d (%s): %s", b->layer, b->module_name ? b->module_name : "?",
        msg);
  else
    g_set_error_literal (b->error, YOLOSE_ERROR, YOLOSE_ERROR_MODEL, msg);
  g_free (msg);
  return FALSE;
}

static gboolean
unsupported (Builder *b, const char *format, ...)
{
  va_list ap;
  char *msg;

  va_start (ap, format);
  msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error (b->error, YOLOSE_ERROR, YOLOSE_ERROR_UNSUPPORTED,
      "layer %d (%s): %s", b->layer, b->module_name ? b->module_name : "?",
      msg);
  g_free (msg);
  return FALSE;
}

/* ---- weights ---------------------------------------------------------- */

static const YolosePyValue *
child (Builder *b, const YolosePyValue *module, const char *name)
{
  const YolosePyValue *v = yolose_py_attr (module, name);

  if (v == NULL || v->kind != YOLOSE_PY_OBJECT) {
    fail (b, "the checkpoint has no submodule '%s'", name);
    return NULL;
  }
  return v;
}

static char *
shape_string (const gint64 *sizes, int ndim)
{
  GString *s = g_string_new ("[");
  int i;

  for (i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", sizes[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

/* Reads parameter @name of @module as float32 and checks its shape against
 * the @ndim sizes that follow.  NULL (with the error set) otherwise. */
static float *
read_param (Builder *b, const YolosePyValue *module, const char *what,
    const char *name, int ndim, ...)
{
  const YolosePyValue *t = yolose_py_attr (module, name);
  gint64 want[YOLOSE_TENSOR_MAX_DIMS];
  GError *local = NULL;
  float *data;
  va_list ap;
  int i;
  gboolean same;

  va_start (ap, ndim);
  for (i = 0; i < ndim; i++)
    want[i] = va_arg (ap, gint64);
  va_end (ap);

  if (t == NULL || t->kind != YOLOSE_PY_TENSOR) {
    fail (b, "missing tensor %s.%s", what, name);
    return NULL;
  }
  same = t->v.tensor.ndim == ndim;
  for (i = 0; same && i < ndim; i++)
    same = t->v.tensor.sizes[i] == want[i];
  if (!same) {
    char *got = shape_string (t->v.tensor.sizes, t->v.tensor.ndim);
    char *exp = shape_string (want, ndim);
    fail (b, "tensor %s.%s has shape %s, the yaml implies %s", what, name, got,
        exp);
    g_free (got);
    g_free (exp);
    return NULL;
  }
  data = yolose_checkpoint_tensor_f32 (b->ckpt, t, &local);
  if (data == NULL) {
    fail (b, "tensor %s.%s: %s", what, name, local->message);
    g_error_free (local);
    return NULL;
  }
  b->params += yolose_tensor_numel (t);
  return data;
}

static gboolean
check_int_pair (Builder *b, const YolosePyValue *conv2d, const char *attr,
    int expected)
{
  const YolosePyValue *v = yolose_py_attr (conv2d, attr);
  gint64 x;
  gsize i;

  if (v == NULL)
    return TRUE; /* older pickles may lack it: the yaml rules */
  for (i = 0; i < MAX (yolose_py_len (v), 1); i++) {
    const YolosePyValue *item = yolose_py_len (v) ? yolose_py_item (v, i) : v;
    if (!yolose_py_get_int (item, &x))
      return TRUE; /* e.g. padding='same' strings: shapes decide */
    if (x != expected)
      return unsupported (b,
          "Conv2d %s is %" G_GINT64_FORMAT ", the yaml implies %d", attr, x,
          expected);
  }
  return TRUE;
}

static YoloseActivation
conv_activation (Builder *b, const YolosePyValue *conv, gboolean *ok)
{
  const YolosePyValue *act = yolose_py_attr (conv, "act");

  *ok = TRUE;
  if (act == NULL || act->kind != YOLOSE_PY_OBJECT)
    return YOLOSE_ACT_SILU; /* upstream's default_act */
  if (g_strcmp0 (act->v.object.name, "SiLU") == 0)
    return YOLOSE_ACT_SILU;
  if (g_strcmp0 (act->v.object.name, "Identity") == 0)
    return YOLOSE_ACT_NONE;
  *ok = unsupported (b,
      "activation %s.%s is not supported (SiLU or "
      "Identity)",
      act->v.object.module, act->v.object.name);
  return YOLOSE_ACT_NONE;
}

/* BatchNorm folded as upstream's fuse_conv_and_bn, in float32:
 * w' = w * g / sqrt(eps + var), b' = b * g / sqrt(eps + var) + beta
 * - g * mean / sqrt(var + eps). */
static gboolean
fold_batchnorm (Builder *b, const YolosePyValue *bn, int c2, gsize per_out,
    float *weight, float *bias)
{
  float *gamma, *beta = NULL, *mean = NULL, *var = NULL;
  const YolosePyValue *eps_v = yolose_py_attr (bn, "eps");
  double eps = 1e-5;
  gboolean ok = FALSE;
  int o;

  if (eps_v != NULL && !yolose_py_get_number (eps_v, &eps))
    return fail (b, "BatchNorm2d eps is not a number");
  if (!(eps >= 0 && eps < 1))
    return fail (b, "BatchNorm2d eps %g is out of range", eps);
  gamma = read_param (b, bn, "bn", "weight", 1, (gint64)c2);
  if (gamma)
    beta = read_param (b, bn, "bn", "bias", 1, (gint64)c2);
  if (beta)
    mean = read_param (b, bn, "bn", "running_mean", 1, (gint64)c2);
  if (mean)
    var = read_param (b, bn, "bn", "running_var", 1, (gint64)c2);
  if (var) {
    /* running statistics are buffers, not parameters */
    b->params -= 2 * (gint64)c2;
    for (o = 0; o < c2; o++) {
      float denom = sqrtf (var[o] + (float)eps);
      float scale = gamma[o] / denom;
      gsize i;
      if (!(denom > 0.0f))
        break;
      for (i = 0; i < per_out; i++)
        weight[o * per_out + i] *= scale;
      bias[o] = bias[o] * scale + (beta[o] - gamma[o] * mean[o] / denom);
    }
    ok = o == c2
        || fail (b,
            "BatchNorm2d running_var of channel %d is "
            "negative",
            o);
  }
  g_free (gamma);
  g_free (beta);
  g_free (mean);
  g_free (var);
  return ok;
}

/* Every feature map the yaml makes: at most MAX_CHANNELS channels and no
 * larger than the input (YOLOv5's are 1/2 to 1/64 of it), so that a file
 * cannot overflow the sizes or make the graph allocate gigabytes with a few
 * Concat, Upsample or padded layers that hold no weights. */
static gboolean
map_size_valid (Builder *b, gint64 c, gint64 h, gint64 w)
{
  if (c < 1 || c > MAX_CHANNELS || h > b->graph->size || w > b->graph->size)
    return unsupported (b,
        "a feature map of %" G_GINT64_FORMAT " channels, "
        "%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT ", for a %dx%d input (at "
        "most %d channels, and no larger than the input)",
        c, h, w, b->graph->size, b->graph->size, MAX_CHANNELS);
  return TRUE;
}

typedef struct {
  int c2, k, s, p, g;
} ConvArgs;

static gboolean
conv_args_valid (Builder *b, int c1, const ConvArgs *a)
{
  if (a->c2 < 1 || a->c2 > MAX_CHANNELS || a->k < 1 || a->k > MAX_KERNEL
      || a->s < 1 || a->s > MAX_KERNEL || a->p < 0 || a->p > MAX_KERNEL
      || a->g < 1 || c1 % a->g || a->c2 % a->g)
    return unsupported (b,
        "convolution c1=%d c2=%d k=%d s=%d p=%d g=%d is "
        "not supported",
        c1, a->c2, a->k, a->s, a->p, a->g);
  return TRUE;
}

/* Adds one upstream Conv (Conv2d + BatchNorm2d or fused bias + activation)
 * reading @in, writing a new value, optionally adding @residual. */
static int
add_conv (Builder *b, const YolosePyValue *conv_module, const char *what,
    int in, const ConvArgs *a, int residual)
{
  YoloseValue *iv = yolose_graph_value (b->graph, in);
  int c1 = iv->c, oh, ow, out;
  const YolosePyValue *conv2d, *bn;
  gsize per_out;
  float *weight, *bias;
  YoloseOp op = { 0 };
  gboolean ok;

  if (!conv_args_valid (b, c1, a))
    return -1;
  oh = yolose_conv_out_dim (iv->h, a->k, a->s, a->p);
  ow = yolose_conv_out_dim (iv->w, a->k, a->s, a->p);
  if (oh < 1 || ow < 1)
    return fail (b, "%s: a %dx%d kernel does not fit a %dx%d feature map", what,
               a->k, a->k, iv->h, iv->w),
           -1;
  if (!map_size_valid (b, a->c2, oh, ow))
    return -1;
  conv2d = child (b, conv_module, "conv");
  if (conv2d == NULL)
    return -1;
  if (!check_int_pair (b, conv2d, "stride", a->s)
      || !check_int_pair (b, conv2d, "padding", a->p)
      || !check_int_pair (b, conv2d, "dilation", 1)
      || !check_int_pair (b, conv2d, "groups", a->g))
    return -1;
  op.u.conv.desc.act = conv_activation (b, conv_module, &ok);
  if (!ok)
    return -1;

  per_out = (gsize)(c1 / a->g) * a->k * a->k;
  weight = read_param (b, conv2d, what, "weight", 4, (gint64)a->c2,
      (gint64)(c1 / a->g), (gint64)a->k, (gint64)a->k);
  if (weight == NULL)
    return -1;
  if (yolose_py_attr (conv2d, "bias") != NULL
      && yolose_py_attr (conv2d, "bias")->kind == YOLOSE_PY_TENSOR)
    bias = read_param (b, conv2d, what, "bias", 1, (gint64)a->c2);
  else
    bias = g_new0 (float, a->c2);
  bn = yolose_py_attr (conv_module, "bn");
  if (bias == NULL
      || (bn != NULL && bn->kind == YOLOSE_PY_OBJECT
          && !fold_batchnorm (b, bn, a->c2, per_out, weight, bias))) {
    g_free (weight);
    g_free (bias);
    return -1;
  }

  out = yolose_graph_add_value (b->graph, a->c2, oh, ow);
  op.kind = YOLOSE_OP_CONV;
  op.layer = b->layer;
  op.input = in;
  op.residual = residual;
  op.output = out;
  op.u.conv.weight = weight;
  op.u.conv.bias = bias;
  op.u.conv.desc = (YoloseConvDesc){ c1, a->c2, a->k, a->s, a->p, a->g,
    op.u.conv.desc.act, weight, bias };
  yolose_graph_add_op (b->graph, &op);
  b->flops += 2.0 * (double)per_out * a->c2 * oh * ow;
  return out;
}

static int
add_conv_1x1 (Builder *b, const YolosePyValue *parent, const char *name, int in,
    int c2)
{
  const YolosePyValue *m = child (b, parent, name);
  ConvArgs a = { c2, 1, 1, 0, 1 };

  return m ? add_conv (b, m, name, in, &a, -1) : -1;
}

static int
add_concat (Builder *b, const int *inputs, int n)
{
  YoloseValue *first = yolose_graph_value (b->graph, inputs[0]);
  int h = first->h, w = first->w, i, out;
  YoloseOp op = { 0 };
  gint64 c = 0;

  for (i = 0; i < n; i++) {
    YoloseValue *v = yolose_graph_value (b->graph, inputs[i]);
    if (v->h != h || v->w != w)
      return fail (b, "Concat of %dx%d and %dx%d feature maps", h, w, v->h,
                 v->w),
             -1;
    c += v->c;
  }
  if (!map_size_valid (b, c, h, w))
    return -1;
  out = yolose_graph_add_value (b->graph, (int)c, h, w);
  op.kind = YOLOSE_OP_CONCAT;
  op.layer = b->layer;
  op.input = -1;
  op.residual = -1;
  op.output = out;
  op.u.concat.inputs = g_memdup2 (inputs, sizeof (int) * n);
  op.u.concat.n_inputs = n;
  yolose_graph_add_op (b->graph, &op);
  return out;
}

/* What a map side of @side pixels at the size being built (S) is when the
 * network runs at upstream's training size: @side * 640 / S. */
static gint64
map_at_training_size (Builder *b, int side)
{
  return (gint64)side * YOLOSE_DEFAULT_INPUT_SIZE / b->graph->size;
}

/* Pooling kernels are judged against the map a layer sees at upstream's
 * training size, whatever size is being built: a 640 model run at 128
 * pools its 4x4 deepest map with k=5 exactly as torch does, but a window
 * wider than the map the layer was trained on is a mistyped argument (every
 * output would be the whole map's maximum). */
static int
add_maxpool (Builder *b, int in, int k)
{
  YoloseValue *iv = yolose_graph_value (b->graph, in);
  gint64 trained_h = map_at_training_size (b, iv->h);
  gint64 trained_w = map_at_training_size (b, iv->w);
  YoloseOp op = { 0 };
  int out;

  if (k < 1 || k % 2 == 0)
    return unsupported (b,
               "max pooling kernel %d is even: with padding "
               "k/2 it changes the feature map's size, which upstream cannot "
               "build "
               "either (the seed's 'SPPF [512, 512]' means kernel 512; the "
               "working "
               "form is 'SPPF [1024, 5]')",
               k),
           -1;
  if (k > trained_h || k > trained_w)
    return unsupported (b,
               "max pooling kernel %d is larger than the "
               "%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " feature map this "
               "layer pools at upstream's training size %d (use an odd "
               "kernel no larger than the map; upstream's SPPF uses 5)",
               k, trained_h, trained_w, YOLOSE_DEFAULT_INPUT_SIZE),
           -1;
  /* Still bounded: a stride-2 map is 320 wide at 640, and a pooling layer
   * holds no weights, so without a cap a tiny file could ask for 10^5
   * comparisons per pixel. */
  if (k > MAX_KERNEL)
    return unsupported (b, "max pooling kernel %d is larger than %d", k,
               MAX_KERNEL),
           -1;
  out = yolose_graph_add_value (b->graph, iv->c, iv->h, iv->w);
  op.kind = YOLOSE_OP_MAXPOOL;
  op.layer = b->layer;
  op.input = in;
  op.residual = -1;
  op.output = out;
  op.u.pool.kernel = k;
  op.u.pool.stride = 1;
  op.u.pool.pad = k / 2;
  yolose_graph_add_op (b->graph, &op);
  return out;
}

/* ---- yaml arguments --------------------------------------------------- */

static gboolean
arg_int (const YolosePyValue *args, gsize i, gint64 fallback, gint64 *out)
{
  const YolosePyValue *v = yolose_py_item (args, i);
  double d;

  if (v == NULL || v->kind == YOLOSE_PY_NONE
      || (v->kind == YOLOSE_PY_STRING && strcmp (v->v.str.data, "None") == 0)) {
    *out = fallback;
    return TRUE;
  }
  if (yolose_py_get_int (v, out))
    return TRUE;
  if (yolose_py_get_number (v, &d) && d == floor (d) && fabs (d) < 1e9) {
    *out = (gint64)d;
    return TRUE;
  }
  return FALSE;
}

static gboolean
arg_bool (const YolosePyValue *args, gsize i, gboolean fallback)
{
  const YolosePyValue *v = yolose_py_item (args, i);

  if (v == NULL)
    return fallback;
  if (v->kind == YOLOSE_PY_BOOL)
    return v->v.boolean;
  if (v->kind == YOLOSE_PY_INT)
    return v->v.integer != 0;
  if (v->kind == YOLOSE_PY_STRING)
    return strcmp (v->v.str.data, "False") != 0;
  return fallback;
}

/* upstream's make_divisible (x, 8) = ceil (x / 8) * 8 */
static int
make_divisible (double x)
{
  return (int)ceil (x / 8.0) * 8;
}

static int
scaled_channels (Builder *b, gint64 c2)
{
  if (c2 == b->no)
    return (int)c2;
  return make_divisible ((double)c2 * b->width);
}

static gboolean
out_channels_arg (Builder *b, const YolosePyValue *args, int *c2)
{
  gint64 raw;

  if (!arg_int (args, 0, -1, &raw) || raw < 1 || raw > MAX_CHANNELS)
    return fail (b, "the first argument must be the output channels");
  *c2 = scaled_channels (b, raw);
  return TRUE;
}

/* ---- modules ---------------------------------------------------------- */

static int
build_conv_row (Builder *b, const YolosePyValue *m, const YolosePyValue *args,
    int in)
{
  ConvArgs a = { 0 };
  gint64 k, s, p, g;

  if (!out_channels_arg (b, args, &a.c2))
    return -1;
  if (!arg_int (args, 1, 1, &k) || !arg_int (args, 2, 1, &s)
      || !arg_int (args, 3, k / 2, &p) || !arg_int (args, 4, 1, &g) || k < 1
      || k > MAX_KERNEL || s < 1 || s > MAX_KERNEL || p < 0 || p > MAX_KERNEL
      || g < 1 || g > MAX_CHANNELS)
    return fail (b, "Conv arguments must be [c2, k, s, p, g]"), -1;
  a.k = (int)k;
  a.s = (int)s;
  a.p = (int)p;
  a.g = (int)g;
  return add_conv (b, m, "Conv", in, &a, -1);
}

static int
build_bottleneck (Builder *b, const YolosePyValue *m, int in, int c2,
    gboolean shortcut, int g, double e)
{
  int c1 = yolose_graph_value (b->graph, in)->c;
  int c_ = (int)(c2 * e);
  const YolosePyValue *cv2 = child (b, m, "cv2");
  const YolosePyValue *add_v = yolose_py_attr (m, "add");
  gboolean add = shortcut && c1 == c2;
  ConvArgs a3 = { c2, 3, 1, 1, g };
  int hidden;

  if (add_v != NULL && add_v->kind == YOLOSE_PY_BOOL && add_v->v.boolean != add)
    return fail (b,
               "Bottleneck shortcut is %s in the checkpoint, the yaml "
               "implies %s",
               add_v->v.boolean ? "on" : "off", add ? "on" : "off"),
           -1;
  if (cv2 == NULL)
    return -1;
  hidden = add_conv_1x1 (b, m, "cv1", in, c_);
  if (hidden < 0)
    return -1;
  return add_conv (b, cv2, "cv2", hidden, &a3, add ? in : -1);
}

/* C3's cv1 and cv2 read the same input, so they run as one convolution
 * (yolose_graph_join_last_convs), cv2's channels on top: [cv2 | cv1] is
 * written into channels c_ .. 3 c_ of one value whose first c_ channels
 * the Bottlenecks' result fills.  cv3's input, the Concat [Bottlenecks |
 * cv2], is then that value's first 2 c_ channels: no Concat runs, the
 * input is read once instead of twice, and the GEMM has twice the rows.
 * Returns the joined value's id in @joined and that of cv1's output, or
 * -1 with @joined -1 when the two do not join (cv2's output in
 * @branch then). */
static int
add_c3_branches (Builder *b, const YolosePyValue *m, int in, int c_,
    int *branch, int *joined)
{
  int first = add_conv_1x1 (b, m, "cv1", in, c_), whole;
  YoloseValue *v;

  *joined = -1;
  if (first < 0)
    return -1;
  *branch = add_conv_1x1 (b, m, "cv2", in, c_);
  if (*branch < 0)
    return -1;
  whole = yolose_graph_join_last_convs (b->graph, TRUE);
  if (whole < 0)
    return first;
  v = yolose_graph_value (b->graph, whole);
  *joined = yolose_graph_add_value (b->graph, 3 * c_, v->h, v->w);
  /* adding a value may move the array @v pointed into */
  v = yolose_graph_value (b->graph, whole);
  v->parent = *joined;
  v->channel_offset = c_;
  return first;
}

/* The Concat of a joined C3 (add_c3_branches): the Bottlenecks' result
 * @x becomes the first c_ channels of @joined, and the Concat its first 2
 * c_.  When @x is already placed elsewhere (no Bottleneck ran), the
 * Concat copies. */
static int
c3_concat (Builder *b, int x, int branch, int joined, int c_)
{
  YoloseValue *xv = yolose_graph_value (b->graph, x);
  int cat, parts[2] = { x, branch };

  if (joined < 0 || xv->parent >= 0)
    return add_concat (b, parts, 2);
  xv->parent = joined;
  xv->channel_offset = 0;
  cat = yolose_graph_add_value (b->graph, 2 * c_, xv->h, xv->w);
  yolose_graph_value (b->graph, cat)->parent = joined;
  yolose_graph_value (b->graph, cat)->channel_offset = 0;
  return cat;
}

static int
build_c3 (Builder *b, const YolosePyValue *m, const YolosePyValue *args, int in,
    int n)
{
  int c2 = 0, c_, x, branch = -1, joined, i;
  char extra[16];
  gboolean shortcut = arg_bool (args, 1, TRUE);
  gint64 g;
  const YolosePyValue *seq = child (b, m, "m");

  if (seq == NULL || !out_channels_arg (b, args, &c2))
    return -1;
  if (!arg_int (args, 2, 1, &g) || g < 1 || g > MAX_CHANNELS)
    return fail (b, "C3 groups must be a positive integer"), -1;
  c_ = (int)(c2 * 0.5);
  x = add_c3_branches (b, m, in, c_, &branch, &joined);
  for (i = 0; i < n && x >= 0; i++) {
    char key[16];
    const YolosePyValue *bott;
    g_snprintf (key, sizeof key, "%d", i);
    bott = child (b, seq, key);
    x = bott ? build_bottleneck (b, bott, x, c_, shortcut, (int)g, 1.0) : -1;
  }
  if (x < 0)
    return -1;
  g_snprintf (extra, sizeof extra, "%d", n);
  if (yolose_py_attr (seq, extra) != NULL)
    return fail (b,
               "the checkpoint has more than the %d bottlenecks the "
               "yaml implies",
               n),
           -1;
  x = c3_concat (b, x, branch, joined, c_);
  return x < 0 ? -1 : add_conv_1x1 (b, m, "cv3", x, c2);
}

static int
build_sppf (Builder *b, const YolosePyValue *m, const YolosePyValue *args,
    int in)
{
  int c1 = yolose_graph_value (b->graph, in)->c, c2 = 0, parts[4], i;
  gint64 k;

  if (!out_channels_arg (b, args, &c2))
    return -1;
  if (!arg_int (args, 1, 5, &k) || k < 1 || k > G_MAXINT)
    return fail (b, "SPPF's pooling kernel must be an integer"), -1;
  parts[0] = add_conv_1x1 (b, m, "cv1", in, c1 / 2);
  for (i = 1; i < 4 && parts[i - 1] >= 0; i++)
    parts[i] = add_maxpool (b, parts[i - 1], (int)k);
  if (parts[i - 1] < 0)
    return -1;
  i = add_concat (b, parts, 4);
  return i < 0 ? -1 : add_conv_1x1 (b, m, "cv2", i, c2);
}

static int
build_spp (Builder *b, const YolosePyValue *m, const YolosePyValue *args,
    int in)
{
  int c1 = yolose_graph_value (b->graph, in)->c, c2 = 0, parts[9], n = 1, x;
  const YolosePyValue *ks = yolose_py_item (args, 1);
  static const gint64 default_k[] = { 5, 9, 13 };
  gsize i, nk = ks ? yolose_py_len (ks) : 3;

  if (!out_channels_arg (b, args, &c2))
    return -1;
  if (nk < 1 || nk > 8)
    return fail (b, "SPP needs 1 to 8 pooling kernels"), -1;
  parts[0] = x = add_conv_1x1 (b, m, "cv1", in, c1 / 2);
  for (i = 0; i < nk && x >= 0; i++) {
    gint64 k = default_k[i % 3];
    if (ks != NULL
        && (!yolose_py_get_int (yolose_py_item (ks, i), &k) || k < 1
            || k > G_MAXINT))
      return fail (b, "SPP kernels must be integers"), -1;
    parts[n++] = x = add_maxpool (b, parts[0], (int)k);
  }
  if (x < 0)
    return -1;
  x = add_concat (b, parts, n);
  return x < 0 ? -1 : add_conv_1x1 (b, m, "cv2", x, c2);
}

static int
build_selayer (Builder *b, const YolosePyValue *m, const YolosePyValue *args,
    int in)
{
  YoloseValue *iv = yolose_graph_value (b->graph, in);
  int c1 = iv->c, c2 = 0, hidden, out;
  gint64 ratio;
  const YolosePyValue *l1 = child (b, m, "l1"), *l2;
  YoloseOp op = { 0 };

  if (l1 == NULL || (l2 = child (b, m, "l2")) == NULL
      || !out_channels_arg (b, args, &c2))
    return -1;
  if (!arg_int (args, 1, 16, &ratio) || ratio < 1 || ratio > c1)
    return fail (b, "SElayer's reduction ratio must be 1..%d", c1), -1;
  if (c2 != c1)
    return unsupported (b,
               "SElayer with %d input and %d output channels "
               "(the seed's SElayer keeps the channels)",
               c1, c2),
           -1;
  hidden = c1 / (int)ratio;
  op.u.se.w1
      = read_param (b, l1, "l1", "weight", 2, (gint64)hidden, (gint64)c1);
  op.u.se.w2 = op.u.se.w1
      ? read_param (b, l2, "l2", "weight", 2, (gint64)c1, (gint64)hidden)
      : NULL;
  if (op.u.se.w2 == NULL) {
    g_free (op.u.se.w1);
    return -1;
  }
  out = yolose_graph_add_value (b->graph, c1, iv->h, iv->w);
  op.kind = YOLOSE_OP_SQUEEZE_EXCITE;
  op.layer = b->layer;
  op.input = in;
  op.residual = -1;
  op.output = out;
  op.u.se.hidden = hidden;
  yolose_graph_add_op (b->graph, &op);
  b->flops += 4.0 * c1 * hidden;
  return out;
}

static int
build_upsample (Builder *b, const YolosePyValue *args, int in)
{
  YoloseValue *iv = yolose_graph_value (b->graph, in);
  const YolosePyValue *mode = yolose_py_item (args, 2);
  gint64 size, scale;
  YoloseOp op = { 0 };
  int out;

  if (!arg_int (args, 0, 0, &size) || size != 0)
    return unsupported (b, "Upsample to a fixed size is not supported"), -1;
  if (!arg_int (args, 1, 1, &scale) || scale < 1 || scale > 16)
    return unsupported (b, "Upsample needs an integer scale factor 1..16"), -1;
  if (mode != NULL && g_strcmp0 (yolose_py_get_string (mode), "nearest"))
    return unsupported (b, "Upsample mode '%s' (only 'nearest')",
               yolose_py_get_string (mode) ? yolose_py_get_string (mode) : "?"),
           -1;
  if (!map_size_valid (b, iv->c, iv->h * scale, iv->w * scale))
    return -1;
  out = yolose_graph_add_value (b->graph, iv->c, iv->h * (int)scale,
      iv->w * (int)scale);
  op.kind = YOLOSE_OP_UPSAMPLE;
  op.layer = b->layer;
  op.input = in;
  op.residual = -1;
  op.output = out;
  op.u.upsample.scale = (int)scale;
  yolose_graph_add_op (b->graph, &op);
  return out;
}

/* Detect: one 1x1 conv (with bias, sigmoid) per level, then decode.
 * The anchors come from the Detect module's buffer (in stride units, as
 * Model.__init__ leaves them) and its stride, not from the yaml: training
 * may have re-fitted them. */
static gboolean
read_detect_geometry (Builder *b, const YolosePyValue *m, int nl,
    float **anchors, float **strides)
{
  *strides = read_param (b, m, "Detect", "stride", 1, (gint64)nl);
  if (*strides == NULL)
    return FALSE;
  *anchors = read_param (b, m, "Detect", "anchors", 3, (gint64)nl,
      (gint64)b->na, (gint64)2);
  b->params -= nl + (gint64)nl * b->na * 2; /* buffers, not parameters */
  if (*anchors == NULL) {
    g_free (*strides);
    return FALSE;
  }
  return TRUE;
}

static gboolean
add_detect_level (Builder *b, const YolosePyValue *convs, int level, int in,
    float stride, const float *anchors, gsize first_row)
{
  /* A copy: adding the conv's value below may move the values array. */
  const YoloseValue input = *yolose_graph_value (b->graph, in);
  const YoloseValue *iv = &input;
  const YolosePyValue *conv;
  YoloseOp conv_op = { 0 }, op = { 0 };
  char key[16];
  int a;

  g_snprintf (key, sizeof key, "%d", level);
  conv = child (b, convs, key);
  if (conv == NULL)
    return FALSE;
  if ((double)iv->h * stride != b->graph->size
      || (double)iv->w * stride != b->graph->size)
    return unsupported (b,
        "Detect level %d has stride %g but its feature map "
        "is %dx%d for a %d input",
        level, stride, iv->h, iv->w, b->graph->size);
  conv_op.u.conv.weight = read_param (b, conv, "m", "weight", 4, (gint64)b->no,
      (gint64)iv->c, (gint64)1, (gint64)1);
  conv_op.u.conv.bias = conv_op.u.conv.weight
      ? read_param (b, conv, "m", "bias", 1, (gint64)b->no)
      : NULL;
  if (conv_op.u.conv.bias == NULL) {
    g_free (conv_op.u.conv.weight);
    return FALSE;
  }
  conv_op.kind = YOLOSE_OP_CONV;
  conv_op.layer = b->layer;
  conv_op.input = in;
  conv_op.residual = -1;
  conv_op.output = yolose_graph_add_value (b->graph, b->no, iv->h, iv->w);
  conv_op.u.conv.desc = (YoloseConvDesc){ iv->c, b->no, 1, 1, 0, 1,
    YOLOSE_ACT_SIGMOID, conv_op.u.conv.weight, conv_op.u.conv.bias };
  yolose_graph_add_op (b->graph, &conv_op);
  b->flops += 2.0 * iv->c * b->no * iv->h * iv->w;

  op.kind = YOLOSE_OP_DETECT;
  op.layer = b->layer;
  op.input = conv_op.output;
  op.residual = -1;
  op.output = -1;
  op.u.detect.level = level;
  op.u.detect.first_row = first_row;
  op.u.detect.stride = stride;
  for (a = 0; a < b->na; a++) {
    op.u.detect.anchors[2 * a] = anchors[2 * a] * stride;
    op.u.detect.anchors[2 * a + 1] = anchors[2 * a + 1] * stride;
  }
  yolose_graph_add_op (b->graph, &op);
  return TRUE;
}

static gboolean
build_detect (Builder *b, const YolosePyValue *m, const int *inputs, int nl)
{
  const YolosePyValue *convs = child (b, m, "m");
  const YolosePyValue *nc_v = yolose_py_attr (m, "nc");
  float *anchors = NULL, *strides = NULL;
  gsize rows = 0;
  gint64 nc;
  int level;
  gboolean ok = TRUE;

  if (convs == NULL)
    return FALSE;
  if (nc_v != NULL && (!yolose_py_get_int (nc_v, &nc) || nc != b->nc))
    return fail (b, "Detect has %" G_GINT64_FORMAT " classes, the yaml %d", nc,
        b->nc);
  if (!read_detect_geometry (b, m, nl, &anchors, &strides))
    return FALSE;
  for (level = 0; level < nl && ok; level++) {
    /* Read first: add_detect_level's new values may move the array. */
    YoloseValue *iv = yolose_graph_value (b->graph, inputs[level]);
    gsize level_rows = (gsize)b->na * iv->h * iv->w;

    ok = add_detect_level (b, convs, level, inputs[level], strides[level],
        anchors + (gsize)level * b->na * 2, rows);
    rows += level_rows;
  }
  b->graph->output_rows = rows;
  g_free (anchors);
  g_free (strides);
  return ok;
}

/* ---- the yaml --------------------------------------------------------- */

typedef struct {
  int n_from;
  int from[16];
} FromList;

static gboolean
parse_from (Builder *b, const YolosePyValue *f, int n_outputs, FromList *out)
{
  gsize i, n = f->kind == YOLOSE_PY_INT ? 1 : yolose_py_len (f);

  if (n < 1 || n > G_N_ELEMENTS (out->from))
    return fail (b, "'from' must be an index or a list of 1..16 indices");
  out->n_from = (int)n;
  for (i = 0; i < n; i++) {
    gint64 idx;
    const YolosePyValue *item
        = f->kind == YOLOSE_PY_INT ? f : yolose_py_item (f, i);
    if (!yolose_py_get_int (item, &idx))
      return fail (b, "'from' entries must be integers");
    if (idx < 0)
      idx += b->layer; /* -1 is the previous layer */
    if (idx < -1 || idx >= n_outputs)
      return fail (b, "'from' index %" G_GINT64_FORMAT " is out of range", idx);
    out->from[i] = (int)idx;
  }
  return TRUE;
}

static const YolosePyValue *
find_model (const YolosePyValue *root, GError **error)
{
  const YolosePyValue *m = NULL;

  if (root->kind == YOLOSE_PY_OBJECT)
    m = root;
  else if (root->kind == YOLOSE_PY_DICT) {
    m = yolose_py_dict_get (root, "model");
    if (m == NULL || m->kind == YOLOSE_PY_NONE)
      m = yolose_py_dict_get (root, "ema");
  }
  if (m == NULL || m->kind != YOLOSE_PY_OBJECT) {
    g_set_error (error, YOLOSE_ERROR, YOLOSE_ERROR_MODEL,
        "the checkpoint holds no model (neither 'model' nor 'ema' is a "
        "module): is this an upstream YOLOv5 training checkpoint?");
    return NULL;
  }
  if (g_strcmp0 (m->v.object.name, "Model") != 0
      && g_strcmp0 (m->v.object.name, "DetectionModel") != 0) {
    g_set_error (error, YOLOSE_ERROR, YOLOSE_ERROR_UNSUPPORTED,
        "the checkpoint's model is a %s.%s, not a YOLOv5 detection Model",
        m->v.object.module, m->v.object.name);
    return NULL;
  }
  return m;
}

static gboolean
read_number (Builder *b, const YolosePyValue *yaml, const char *key,
    double *out)
{
  if (!yolose_py_get_number (yolose_py_dict_get (yaml, key), out)
      || !(*out > 0 && *out <= 16))
    return fail (b, "the model's yaml has no valid '%s'", key);
  return TRUE;
}

static gboolean
read_names (Builder *b, const YolosePyValue *model, YoloseModelInfo *info)
{
  const YolosePyValue *names = yolose_py_attr (model, "names");
  int i;

  for (i = 0; i < b->nc; i++) {
    const char *name = NULL;
    if (names
        && (names->kind == YOLOSE_PY_LIST || names->kind == YOLOSE_PY_TUPLE))
      name = yolose_py_get_string (yolose_py_item (names, i));
    else if (names && names->kind == YOLOSE_PY_DICT) {
      gsize k;
      for (k = 0; k < names->v.dict.len && name == NULL; k++) {
        gint64 key;
        if (yolose_py_get_int (names->v.dict.keys[k], &key) && key == i)
          name = yolose_py_get_string (names->v.dict.values[k]);
      }
    }
    g_ptr_array_add (info->class_names,
        name ? g_strdup (name) : g_strdup_printf ("class%d", i));
  }
  return TRUE;
}

static char *
value_repr (const YolosePyValue *v)
{
  GString *s;
  gsize i;

  if (v == NULL)
    return g_strdup ("?");
  switch (v->kind) {
    case YOLOSE_PY_NONE:
      return g_strdup ("None");
    case YOLOSE_PY_BOOL:
      return g_strdup (v->v.boolean ? "True" : "False");
    case YOLOSE_PY_INT:
      return g_strdup_printf ("%" G_GINT64_FORMAT, v->v.integer);
    case YOLOSE_PY_FLOAT:
      return g_strdup_printf ("%g", v->v.real);
    case YOLOSE_PY_STRING:
      return g_strdup (v->v.str.data);
    case YOLOSE_PY_LIST:
    case YOLOSE_PY_TUPLE:
      s = g_string_new ("[");
      for (i = 0; i < v->v.seq.len && i < 16; i++) {
        char *item = value_repr (v->v.seq.items[i]);
        g_string_append_printf (s, "%s%s", i ? ", " : "", item);
        g_free (item);
      }
      g_string_append (s, i < v->v.seq.len ? ", ...]" : "]");
      return g_string_free (s, FALSE);
    default:
      return g_strdup (yolose_py_kind_name (v->kind));
  }
}

static void
record_layer (Builder *b, const YolosePyValue *row, const char *module, int n)
{
  GArray *layers = b->info->layers;
  YoloseLayerInfo *li;

  /* filled in place: the array owns the strings from the start */
  g_array_set_size (layers, layers->len + 1);
  li = &g_array_index (layers, YoloseLayerInfo, layers->len - 1);
  li->module = g_strdup (module);
  li->from = value_repr (yolose_py_item (row, 0));
  li->repeats = n;
  li->params = b->params;
  li->gflops = (b->flops - b->row_flops_start) / 1e9;
  li->args = value_repr (yolose_py_item (row, 3));
  b->info->params += b->params;
}

static int
build_row (Builder *b, const YolosePyValue *module, const char *type,
    const YolosePyValue *args, const FromList *from, const int *outputs, int n)
{
  int in = from->from[0] < 0 ? b->graph->input : outputs[from->from[0]];
  int ins[16], i;

  if (from->n_from > 1 && strcmp (type, "Concat") && strcmp (type, "Detect"))
    return unsupported (b, "%s takes one input", type), -1;
  for (i = 0; i < from->n_from; i++)
    ins[i] = from->from[i] < 0 ? b->graph->input : outputs[from->from[i]];
  if (n != 1 && strcmp (type, "C3"))
    return unsupported (b, "%s repeated %d times (only C3 repeats)", type, n),
           -1;

  if (strcmp (type, "Conv") == 0)
    return build_conv_row (b, module, args, in);
  if (strcmp (type, "C3") == 0)
    return build_c3 (b, module, args, in, n);
  if (strcmp (type, "SPPF") == 0)
    return build_sppf (b, module, args, in);
  if (strcmp (type, "SPP") == 0)
    return build_spp (b, module, args, in);
  if (strcmp (type, "SElayer") == 0)
    return build_selayer (b, module, args, in);
  if (strcmp (type, "Concat") == 0) {
    gint64 dim;
    if (!arg_int (args, 0, 1, &dim) || dim != 1)
      return unsupported (b, "Concat along dimension other than 1"), -1;
    return add_concat (b, ins, from->n_from);
  }
  if (strcmp (type, "nn.Upsample") == 0 || strcmp (type, "Upsample") == 0)
    return build_upsample (b, args, in);
  if (strcmp (type, "Detect") == 0)
    return build_detect (b, module, ins, from->n_from) ? 0 : -1;
  return unsupported (b,
             "module '%s' is not supported (yolose runs Conv, "
             "C3, SPPF, SPP, SElayer, Concat, nn.Upsample and Detect)",
             type),
         -1;
}

static gboolean
build_rows (Builder *b, const YolosePyValue *layers, const YolosePyValue *rows)
{
  gsize n_rows = yolose_py_len (rows), i;
  int *outputs = g_new0 (int, n_rows + 1);
  gboolean ok = TRUE, have_detect = FALSE;

  for (i = 0; i < n_rows && ok; i++) {
    const YolosePyValue *row = yolose_py_item (rows, i);
    const YolosePyValue *module, *args;
    const char *type;
    char key[16];
    gint64 n;
    FromList from = { 0 };

    b->layer = (int)i;
    b->params = 0;
    b->row_flops_start = b->flops;
    b->module_name = NULL;
    type = yolose_py_get_string (yolose_py_item (row, 2));
    args = yolose_py_item (row, 3);
    if (yolose_py_len (row) != 4 || type == NULL || args == NULL
        || !yolose_py_get_int (yolose_py_item (row, 1), &n) || n < 1
        || n > MAX_REPEATS) {
      ok = fail (b, "yaml row must be [from, number, module, args]");
      break;
    }
    b->module_name = type;
    if (have_detect) {
      ok = unsupported (b, "layers after Detect");
      break;
    }
    if (n > 1)
      n = MAX ((gint64)nearbyint (n * b->depth), 1);
    g_snprintf (key, sizeof key, "%d", (int)i);
    module = yolose_py_attr (layers, key);
    if (module == NULL || module->kind != YOLOSE_PY_OBJECT) {
      ok = fail (b, "the checkpoint has no module model.%d", (int)i);
      break;
    }
    ok = parse_from (b, yolose_py_item (row, 0), (int)i, &from);
    if (ok) {
      outputs[i] = build_row (b, module, type, args, &from, outputs, (int)n);
      ok = outputs[i] >= 0;
      have_detect = strcmp (type, "Detect") == 0;
    }
    if (ok)
      record_layer (b, row, type, (int)n);
  }
  if (ok && !have_detect) {
    b->layer = -1;
    ok = fail (b, "the model has no Detect layer");
  }
  g_free (outputs);
  return ok;
}

static gboolean
read_yaml (Builder *b, const YolosePyValue *model, const YolosePyValue **rows)
{
  const YolosePyValue *yaml = yolose_py_attr (model, "yaml");
  const YolosePyValue *anchors, *backbone, *head;
  gint64 nc;
  YolosePyValue *all;

  if (yaml == NULL || yaml->kind != YOLOSE_PY_DICT)
    return fail (b, "the model has no yaml dict describing its architecture");
  if (!yolose_py_get_int (yolose_py_dict_get (yaml, "nc"), &nc) || nc < 1
      || nc > 100000)
    return fail (b, "the model's yaml has no valid 'nc'");
  if (!read_number (b, yaml, "depth_multiple", &b->depth)
      || !read_number (b, yaml, "width_multiple", &b->width))
    return FALSE;
  anchors = yolose_py_dict_get (yaml, "anchors");
  if (anchors && anchors->kind == YOLOSE_PY_LIST)
    b->na = (int)yolose_py_len (yolose_py_item (anchors, 0)) / 2;
  else if (!anchors || !yolose_py_get_int (anchors, &nc))
    return fail (b, "the model's yaml has no valid 'anchors'");
  else
    b->na = (int)nc;
  yolose_py_get_int (yolose_py_dict_get (yaml, "nc"), &nc);
  if (b->na < 1 || b->na > 16)
    return fail (b, "the model has %d anchors per level (1..16)", b->na);
  b->nc = (int)nc;
  b->no = b->na * ((int)nc + 5);
  backbone = yolose_py_dict_get (yaml, "backbone");
  head = yolose_py_dict_get (yaml, "head");
  if (yolose_py_len (backbone) < 1 || yolose_py_len (head) < 1
      || yolose_py_len (backbone) + yolose_py_len (head) > MAX_LAYERS)
    return fail (b, "the model's yaml needs 'backbone' and 'head' lists");

  /* one list of rows, backbone then head, as parse_model iterates */
  all = g_new0 (YolosePyValue, 1);
  all->kind = YOLOSE_PY_LIST;
  all->v.seq.len = yolose_py_len (backbone) + yolose_py_len (head);
  all->v.seq.items = g_new (YolosePyValue *, all->v.seq.len);
  memcpy (all->v.seq.items, backbone->v.seq.items,
      yolose_py_len (backbone) * sizeof (YolosePyValue *));
  memcpy (all->v.seq.items + yolose_py_len (backbone), head->v.seq.items,
      yolose_py_len (head) * sizeof (YolosePyValue *));
  *rows = all;
  return TRUE;
}

static void
free_rows (const YolosePyValue *rows)
{
  if (rows) {
    g_free (rows->v.seq.items);
    g_free ((gpointer)rows);
  }
}

static void
layer_info_clear (gpointer data)
{
  YoloseLayerInfo *li = data;

  g_free (li->module);
  g_free (li->from);
  g_free (li->args);
}

void
yolose_model_info_clear (YoloseModelInfo *info)
{
  if (info->class_names)
    g_ptr_array_free (info->class_names, TRUE);
  if (info->layers)
    g_array_free (info->layers, TRUE);
  g_free (info->yaml_file);
  memset (info, 0, sizeof *info);
}

YoloseGraph *
yolose_model_build (YoloseCheckpoint *ckpt, int size,
    const YoloseKernels *kernels, YoloseModelInfo *info, GError **error)
{
  const YolosePyValue *model, *seq, *rows = NULL;
  Builder b = { 0 };
  gboolean ok;

  memset (info, 0, sizeof *info);
  info->class_names = g_ptr_array_new_with_free_func (g_free);
  info->layers = g_array_new (FALSE, TRUE, sizeof (YoloseLayerInfo));
  g_array_set_clear_func (info->layers, layer_info_clear);

  model = find_model (yolose_checkpoint_root (ckpt), error);
  if (model == NULL)
    return NULL;
  b.ckpt = ckpt;
  b.info = info;
  b.error = error;
  b.layer = -1;
  b.graph = yolose_graph_new (size, kernels);
  b.graph->input = yolose_graph_add_value (b.graph, 3, size, size);

  ok = read_yaml (&b, model, &rows);
  if (ok) {
    seq = yolose_py_attr (model, "model");
    ok = seq != NULL && seq->kind == YOLOSE_PY_OBJECT;
    if (!ok)
      fail (&b, "the model has no 'model' Sequential of layers");
  }
  if (ok)
    ok = build_rows (&b, seq, rows) && read_names (&b, model, info);
  free_rows (rows);
  if (!ok) {
    yolose_graph_free (b.graph);
    return NULL;
  }
  b.graph->num_classes = b.nc;
  b.graph->num_anchors = b.na;
  info->gflops = b.flops / 1e9;
  info->yaml_file
      = g_strdup (yolose_py_get_string (yolose_py_attr (model, "yaml_file")));
  return b.graph;
}
