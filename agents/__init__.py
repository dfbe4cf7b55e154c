"""LangGraph agents: the agentic variation operator and the supervisor.

- variation.py: propose -> verify -> repair (bounded loop) -> critique -> iterate | submit
- supervisor.py: stagnation rule, trajectory review, directions.json
- operator.py: AgentOperator, the VariationOperator that runs the variation graph
- models.py: chat models by provider string or OpenAI-compatible URL; retries; budget
- tools.py: the tools the agent uses on its workbench
"""
