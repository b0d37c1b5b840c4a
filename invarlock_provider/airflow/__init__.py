"""The Airflow layer: a hook for the evidence store and three thin operators over the library.

Every operator does what one ``invarlock`` command does, so any DAG step can be replayed by hand.
Nothing heavy is imported here or in the operators' constructors: DAG files import this module.
"""
