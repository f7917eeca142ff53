/* yolose tests — core/graph.c: joining two 1x1 convolutions of one input.
 *
 * The joined convolution must give each old output exactly what its own
 * convolution gave (a plain loop here is the reference), in the channel
 * order asked for, on every kernel table this CPU runs; and pairs that
 * one GEMM cannot run must be left alone. */
#include <check.h>
#include <math.h>

#include "graph.h"
#include "kernels.h"

#define CIN 8
#define SIDE 12

typedef struct {
  int c_out;
  YoloseActivation act;
  int kernel;
  gboolean residual;
} ConvSpec;

/* A value in [-1, 1) that differs for every (seed, index). */
static float
sample (int seed, int index)
{
  guint32 x = (guint32)seed * 2654435761u ^ (guint32)index * 40503u;

  x ^= x >> 13;
  x *= 0x5bd1e995u;
  x ^= x >> 15;
  return (float)(x % 2000u) / 1000.0f - 1.0f;
}

/* Appends a convolution of @in as @spec says, weights from @seed. */
static int
add_test_conv (YoloseGraph *graph, int in, const ConvSpec *spec, int seed)
{
  int taps = spec->kernel * spec->kernel, out;
  float *weight = g_new (float, (gsize)spec->c_out *CIN *taps);
  float *bias = g_new (float, spec->c_out);
  YoloseOp op = { 0 };

  for (int i = 0; i < spec->c_out * CIN * taps; i++)
    weight[i] = sample (seed, i) * 0.5f;
  for (int i = 0; i < spec->c_out; i++)
    bias[i] = sample (seed + 1000, i);
  out = yolose_graph_add_value (graph, spec->c_out, SIDE, SIDE);
  op.kind = YOLOSE_OP_CONV;
  op.input = in;
  op.residual = spec->residual ? in : -1;
  op.output = out;
  op.u.conv.weight = weight;
  op.u.conv.bias = bias;
  op.u.conv.desc = (YoloseConvDesc){ CIN, spec->c_out, spec->kernel, 1,
    spec->kernel / 2, 1, spec->act, weight, bias };
  yolose_graph_add_op (graph, &op);
  return out;
}

static float
activate (float x, YoloseActivation act)
{
  switch (act) {
    case YOLOSE_ACT_SILU:
      return x / (1.0f + expf (-x));
    case YOLOSE_ACT_SIGMOID:
      return 1.0f / (1.0f + expf (-x));
    default:
      return x;
  }
}

/* Output channel @oc at pixel @p of a 1x1 convolution of @input. */
static float
reference_1x1 (const float *input, const ConvSpec *spec, int seed, int oc,
    int p)
{
  double sum = sample (seed + 1000, oc);

  for (int ic = 0; ic < CIN; ic++)
    sum += (double)(sample (seed, oc * CIN + ic) * 0.5f)
        * input[ic * SIDE * SIDE + p];
  return activate ((float)sum, spec->act);
}

static void
check_output (const YoloseValue *value, const float *input,
    const ConvSpec *spec, int seed, const char *what, const char *table)
{
  for (int oc = 0; oc < spec->c_out; oc++)
    for (int p = 0; p < SIDE * SIDE; p++) {
      float want = reference_1x1 (input, spec, seed, oc, p);
      float got = value->data[oc * SIDE * SIDE + p];
      ck_assert_msg (fabsf (got - want) <= 1e-4f * (1.0f + fabsf (want)),
          "%s (%s), channel %d pixel %d: %g, want %g", what, table, oc, p,
          (double)got, (double)want);
    }
}

static const char *const tables[] = { "generic", "avx2", "avx512" };

/* Two 1x1 SiLU convolutions of one input, joined with the last on top
 * and the other way round: the joined value holds both in that order,
 * and the old outputs, now its slices, hold what each computes. */
START_TEST (test_join_matches_separate)
{
  const ConvSpec first = { 6, YOLOSE_ACT_SILU, 1, FALSE };
  const ConvSpec second = { 5, YOLOSE_ACT_SILU, 1, FALSE };
  int ran = 0;

  for (gsize t = 0; t < G_N_ELEMENTS (tables); t++)
    for (int last_on_top = 0; last_on_top <= 1; last_on_top++) {
      const YoloseKernels *kernels = yolose_kernels_select (tables[t], NULL);
      YoloseGraph *graph;
      GError *error = NULL;
      int in, a, b, joined;
      YoloseValue *jv;

      if (kernels == NULL)
        continue; /* this CPU cannot run the table */
      graph = yolose_graph_new (SIDE, kernels);
      in = graph->input = yolose_graph_add_value (graph, CIN, SIDE, SIDE);
      a = add_test_conv (graph, in, &first, 1);
      b = add_test_conv (graph, in, &second, 2);
      joined = yolose_graph_join_last_convs (graph, last_on_top);
      ck_assert_int_ge (joined, 0);
      ck_assert_uint_eq (graph->ops->len, 1);
      jv = yolose_graph_value (graph, joined);
      ck_assert_int_eq (jv->c, 11);
      ck_assert_int_eq (yolose_graph_value (graph, a)->parent, joined);
      ck_assert_int_eq (yolose_graph_value (graph, b)->parent, joined);
      ck_assert_int_eq (yolose_graph_value (graph, a)->channel_offset,
          (last_on_top ? 5 : 0));
      ck_assert_int_eq (yolose_graph_value (graph, b)->channel_offset,
          (last_on_top ? 0 : 6));
      ck_assert_msg (yolose_graph_prepare (graph, 2, &error), "%s",
          error ? error->message : "");

      float *input = yolose_graph_value (graph, in)->data;
      for (int i = 0; i < CIN * SIDE * SIDE; i++)
        input[i] = sample (7, i);
      yolose_graph_forward (graph, 2);
      check_output (yolose_graph_value (graph, a), input, &first, 1, "first",
          tables[t]);
      check_output (yolose_graph_value (graph, b), input, &second, 2, "second",
          tables[t]);
      yolose_graph_free (graph);
      ran++;
    }
  ck_assert_int_ge (ran, 2); /* the generic table runs everywhere */
}
END_TEST

/* Pairs one GEMM cannot run stay two operations, untouched. */
START_TEST (test_join_refuses)
{
  static const ConvSpec silu = { 4, YOLOSE_ACT_SILU, 1, FALSE };
  static const ConvSpec refused[] = {
    { 4, YOLOSE_ACT_NONE, 1, FALSE },    /* another activation */
    { 4, YOLOSE_ACT_SIGMOID, 1, FALSE }, /* another activation */
    { 4, YOLOSE_ACT_SILU, 3, FALSE },    /* not 1x1 */
    { CIN, YOLOSE_ACT_SILU, 1, TRUE },   /* a residual */
  };

  for (gsize i = 0; i < G_N_ELEMENTS (refused); i++) {
    YoloseGraph *graph
        = yolose_graph_new (SIDE, yolose_kernels_select ("generic", NULL));
    int in = graph->input = yolose_graph_add_value (graph, CIN, SIDE, SIDE);
    int a = add_test_conv (graph, in, &silu, 1);
    int b = add_test_conv (graph, in, &refused[i], 2);

    ck_assert_int_eq (yolose_graph_join_last_convs (graph, TRUE), -1);
    ck_assert_uint_eq (graph->ops->len, 2);
    ck_assert_int_eq (yolose_graph_value (graph, a)->parent, -1);
    ck_assert_int_eq (yolose_graph_value (graph, b)->parent, -1);
    yolose_graph_free (graph);
  }

  /* an output already placed in another value */
  {
    YoloseGraph *graph
        = yolose_graph_new (SIDE, yolose_kernels_select ("generic", NULL));
    int in = graph->input = yolose_graph_add_value (graph, CIN, SIDE, SIDE);
    int a = add_test_conv (graph, in, &silu, 1);
    int holder = yolose_graph_add_value (graph, 2 * silu.c_out, SIDE, SIDE);

    yolose_graph_value (graph, a)->parent = holder;
    add_test_conv (graph, in, &silu, 2);
    ck_assert_int_eq (yolose_graph_join_last_convs (graph, TRUE), -1);
    ck_assert_uint_eq (graph->ops->len, 2);
    yolose_graph_free (graph);
  }

  /* different inputs */
  {
    YoloseGraph *graph
        = yolose_graph_new (SIDE, yolose_kernels_select ("generic", NULL));
    int in = graph->input = yolose_graph_add_value (graph, CIN, SIDE, SIDE);
    int other = yolose_graph_add_value (graph, CIN, SIDE, SIDE);

    add_test_conv (graph, in, &silu, 1);
    add_test_conv (graph, other, &silu, 2);
    ck_assert_int_eq (yolose_graph_join_last_convs (graph, TRUE), -1);
    ck_assert_uint_eq (graph->ops->len, 2);
    yolose_graph_free (graph);
  }
}
END_TEST

static Suite *
graph_suite (void)
{
  Suite *s = suite_create ("graph");
  TCase *tc = tcase_create ("join");

  tcase_add_test (tc, test_join_matches_separate);
  tcase_add_test (tc, test_join_refuses);
  suite_add_tcase (s, tc);
  return s;
}

int
main (void)
{
  SRunner *runner = srunner_create (graph_suite ());
  int failed;

  srunner_run_all (runner, CK_NORMAL);
  failed = srunner_ntests_failed (runner);
  srunner_free (runner);
  return failed == 0 ? 0 : 1;
}
