"""Trains the small CNN that examples/digits_cnn.py explains (needs torch and scikit-learn).

    python examples/train_digits_cnn.py [--out examples/data]

scikit-learn's bundled 8x8 digits (its first 1500 images; the rest is the test set), pixels
scaled to [0, 1]; conv 1->8 3x3, ReLU, maxpool 2, conv 8->16 3x3, ReLU, avgpool 2, flatten,
dense 64->10. Saved with fastlrp's native format (fl.from_torch(...).save), so the example
needs neither torch nor a download.
"""

import argparse
from pathlib import Path



def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "data"))
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args(argv)
    import torch
    from sklearn.datasets import load_digits

    import fastlrp as fl

    torch.manual_seed(0)
    d = load_digits()
    x = torch.tensor(d.images[:1500, None] / 16.0, dtype=torch.float32)
    y = torch.tensor(d.target[:1500])
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.AvgPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 100):
            idx = perm[i:i + 100]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    xt = torch.tensor(d.images[1500:, None] / 16.0, dtype=torch.float32)
    acc = (model(xt).argmax(1).numpy() == d.target[1500:]).mean()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    fl.from_torch(model).save(out / "digits_cnn.npz")
    print(f"test accuracy {acc:.3f}; wrote {out / 'digits_cnn.npz'}")
    return float(acc)


if __name__ == "__main__":
    main()
