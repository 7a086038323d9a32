// SGD with momentum, PyTorch's formulation (torch.optim.SGD, dampening 0, not Nesterov),
// in place on the parameter and its velocity, one invocation per element:
//
//   g' = g + weight_decay * p
//   v  = momentum * v + g'
//   p  = p - lr * v
//
// With v starting at zero this equals PyTorch, whose first step sets v = g'.

struct Params {
    total: u32,
    lr: f32,
    momentum: f32,
    weight_decay: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;

override WG: u32 = 256;

@compute @workgroup_size(WG)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.total) {
        return;
    }
    let g = grad[i] + p.weight_decay * param[i];
    let v = p.momentum * velocity[i] + g;
    velocity[i] = v;
    param[i] = param[i] - p.lr * v;
}
