// Part: each subgroup of the cooperative-matrix kernel owns 4 x 4 accumulator matrices (FM
// along rows, FN along columns). Provides FM, FN. Expects nothing.

const FM: u32 = 4u;
const FN: u32 = 4u;
