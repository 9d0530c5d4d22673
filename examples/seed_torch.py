"""The classic PyTorch RMSProp example, run on rmsprop's fused core.

A 10 -> 50 -> 1 ReLU network fitted with MSE for 10 epochs. The script is the usual torch one;
only the optimizer line differs (torch.optim.RMSprop -> rmsprop.torch.RMSprop).
Run: python examples/seed_torch.py
"""

import torch
import torch.nn as nn

import rmsprop.torch

torch.manual_seed(0)


class SimpleNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 50)
        self.fc2 = nn.Linear(50, 1)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = self.fc2(x)
        return x


model = SimpleNet()
criterion = nn.MSELoss()
optimizer = rmsprop.torch.RMSprop(model.parameters(), lr=0.01, alpha=0.9, eps=1e-8)

inputs = torch.randn(100, 10)
targets = torch.randn(100, 1)

for epoch in range(10):
    optimizer.zero_grad()
    outputs = model(inputs)
    loss = criterion(outputs, targets)
    loss.backward()
    optimizer.step()
    print(f"Epoch [{epoch + 1}/10], Loss: {loss.item():.4f}")
