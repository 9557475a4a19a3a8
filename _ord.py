import numpy as np, scipy.linalg, torch, gflow as gf
torch.set_num_threads(1)
rng = np.random.default_rng(0)
X = rng.standard_normal((5, 4)); y = rng.uniform(-0.5, 0.5, 5)
net = gf.Network(d=4, width=8, activation="linear", embedding=gf.RandomFeatures(D=6, activation="tanh"), c_hat=0.7, seed=1)
kappa = net.lr * net.alpha**2 * net.beta**2 * net.D * float((net.c**2).sum())
G = net.gram(X).numpy(); print("eig", np.linalg.eigvalsh(kappa*G))
T = 4.0
r0 = net.forward(X).numpy() - y
ref = scipy.linalg.expm(-kappa * G * T) @ r0
for m in ["euler","midpoint","rk4","dopri5","dop853"]:
    errs = []
    hs = [T/4, T/8, T/16] if m in ("dopri5", "dop853") else [T/16, T/32, T/64]
    for h in hs:
        if m in ("dopri5","dop853"):
            sol = gf.simulate(net, X, y, saveat=[0, T], method=m, rtol=1.0, atol=1.0, options=dict(first_step=h, max_step=h, ifactor=1.0), integrals=False)
        else:
            sol = gf.simulate(net, X, y, saveat=[0, T], method=m, step=h, integrals=False)
        errs.append(np.abs(sol.residual[-1]-ref).max())
    print(m, errs, np.log2(np.array(errs[:-1])/np.array(errs[1:])), sol.stats["n_accepted"])
